"""Samba's smbd as the reference receiver: loopback only, every file in one temporary folder."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0
"""Seconds smbd may take to accept connections on its port."""
STOP_TIMEOUT = 10.0
"""Seconds smbd and its children get to exit after SIGTERM before SIGKILL."""
DIRECTORIES = ("lock", "state", "cache", "pid", "private", "binddns", "ncalrpc", "usershares")

CONFIG = """\
[global]
    server role = standalone server
    # Loopback only: never on a real interface, no NetBIOS name service (nmbd is not run).
    interfaces = {host}/8
    bind interfaces only = yes
    smb ports = {port}
    disable netbios = yes
    # SMB1 is off by default since Samba 4.11; the message commands are SMB1 (PROTOCOL.md §4).
    server min protocol = NT1
    lock directory = {root}/lock
    state directory = {root}/state
    cache directory = {root}/cache
    pid directory = {root}/pid
    private dir = {root}/private
    binddns dir = {root}/binddns
    ncalrpc dir = {root}/ncalrpc
    usershare path = {root}/usershares
    passdb backend = tdbsam:{root}/private/passdb.tdb
    log file = {root}/log.smbd
    log level = 0
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    # smbd waits for the command unless it ends in & (smb.conf(5), "message command").
    message command = /bin/sh -c 'cat %s >> {spool}/messages; rm %s' &
"""


class SmbdUnavailable(Exception):
    """smbd cannot be used for the reference run; the message says why."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Smbd:
    """`smbd --foreground` in its own process group, on 127.0.0.1:`port` and nowhere else."""

    def __init__(self, root: Path) -> None:
        self.executable = shutil.which("smbd")
        if self.executable is None:
            raise SmbdUnavailable("smbd is not installed (Debian package samba)")
        if os.geteuid() != 0:
            raise SmbdUnavailable("smbd needs root")
        self.root = root
        self.port = free_port()
        for name in DIRECTORIES:
            (root / name).mkdir(parents=True, exist_ok=True)
        self.config = root / "smb.conf"
        # Messages are written as the guest account (no session setup came before them):
        # its temporary files and the messages file live in a spool it may write to.
        root.chmod(0o755)
        spool = root / "spool"
        spool.mkdir(exist_ok=True)
        spool.chmod(0o1777)
        self.spool = spool
        self.messages = spool / "messages"
        self.messages.touch()
        self.messages.chmod(0o666)
        self.config.write_text(CONFIG.format(host=LOOPBACK, port=self.port, root=root, spool=spool))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start smbd, wait until it accepts, check its sockets; seconds to ready."""
        started = time.perf_counter()
        # smbd writes each message to a temporary file in $TMPDIR before the command runs.
        env = dict(os.environ, TMPDIR=str(self.spool))
        self.process = subprocess.Popen(
            [self.executable, "--foreground", "--no-process-group", "-s", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = started + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise SmbdUnavailable(f"smbd exited with {self.process.returncode}: {self.log()}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                break
            except OSError:
                if time.perf_counter() > deadline:
                    self.stop()
                    raise SmbdUnavailable(f"smbd did not listen in {START_TIMEOUT:.0f} s") from None
                time.sleep(0.05)
        ready = time.perf_counter() - started
        bad = [address for address in self.listening() if not address.startswith("127.")]
        if bad:
            self.stop()
            raise SmbdUnavailable(f"smbd listened on {bad}; stopped it")
        return ready

    def listening(self) -> list[str]:
        """Local addresses of the TCP sockets smbd's process group listens on (from `ss`)."""
        assert self.process is not None
        output = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
        pids = set(self._group_pids())
        addresses = []
        for line in output.splitlines():
            if any(f"pid={pid}," in line for pid in pids):
                addresses.append(line.split()[3])
        return addresses

    def _group_pids(self) -> list[int]:
        assert self.process is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the parenthesised command: state ppid pgrp ...
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.process.pid:
                pids.append(int(entry.name))
        return pids

    def delivered(self, pattern: re.Pattern[bytes]) -> int:
        """Distinct messages (by `pattern`) the message command has appended so far."""
        try:
            return len(set(pattern.findall(self.messages.read_bytes())))
        except FileNotFoundError:
            return 0

    def log(self) -> str:
        """The last lines of smbd's log, for error messages."""
        try:
            lines = (self.root / "log.smbd").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(lines[-5:])

    def stop(self) -> None:
        """SIGTERM to smbd's process group (smbd, its children, message commands), then KILL."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        deadline = time.perf_counter() + STOP_TIMEOUT
        while self._group_pids() and time.perf_counter() < deadline:
            time.sleep(0.1)
        if self._group_pids():
            _signal_group(group, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()
        self.process = None

    def __enter__(self) -> Smbd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)
