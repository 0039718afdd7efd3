"""A real `messengerd run` process on free loopback ports, for end-to-end and interop tests."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

NOBODY = 65534
"""The uid tests switch to when they need "another user" (Debian's nobody)."""

READY = re.compile(
    r"listening on (?P<bind>\S+): name (?P<name>\d+)/udp, datagram (?P<datagram>\d+)/udp, "
    r"session (?P<session>\d+)/tcp(?:, rpc (?P<rpc>\d+)/udp)?"
)


def ready_ports(match: re.Match[str]) -> dict[str, int]:
    """The ports a ready line names: name, datagram, session, and rpc when it listens."""
    return {key: int(value) for key, value in match.groupdict().items() if key != "bind" and value}


START_TIMEOUT = 20.0


class DaemonProcess:
    """`python -m messengerd run --json` bound to 127.0.0.1, its messages read from stdout.

    `command` runs instead as given (a deployed messengerd, a sandboxed one), with `env`
    for its whole environment; `json_lines=False` queues its stdout lines as text.
    `verbose`: run with -v (every event logged on its own). `read_stdout=False` leaves its
    stdout a pipe nobody reads. `preexec_fn` runs in the child before messengerd (a umask,
    a resource limit). `wait=False` returns at once; wait_ready() then waits for the ports.
    """

    def __init__(
        self,
        *args: str,
        data_dir: Path | None,
        bind: str = "127.0.0.1",
        broadcast: str = "127.255.255.255",
        ports: tuple[int, int, int] = (0, 0, 0),
        netns: str | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        json_lines: bool = True,
        verbose: bool = True,
        read_stdout: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        wait: bool = True,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """`prefix`: a command that runs the daemon's command line (its arguments follow)."""
        if command is None:
            command = [
                sys.executable, "-m", "messengerd", *(["-v"] if verbose else []), "run",
                *(["--json"] if json_lines else []),
                "--bind", bind, "--broadcast", broadcast,
                "--name-port", str(ports[0]), "--datagram-port", str(ports[1]),
                "--session-port", str(ports[2]), "--rpc-port", "0",
                "--data-dir", str(data_dir), *args,
            ]  # fmt: skip
            if netns:
                command = ["ip", "netns", "exec", netns, *command]
        command = [*prefix, *command]
        self.data_dir = data_dir
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            preexec_fn=preexec_fn,
        )
        self.messages: queue.Queue = queue.Queue()
        self.log: list[str] = []
        self.ports: dict[str, int] = {}
        ready = threading.Event()

        def read_stderr() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line.rstrip("\n"))
                match = READY.search(line)
                if match:
                    self.ports = ready_ports(match)
                    ready.set()
            ready.set()

        def read_messages() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.messages.put(json.loads(line) if json_lines else line.rstrip("\n"))

        self._stderr_reader = threading.Thread(target=read_stderr, daemon=True)
        self._stderr_reader.start()
        self._reading_stdout = read_stdout
        if read_stdout:
            threading.Thread(target=read_messages, daemon=True).start()
        self._ready = ready
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Return once the daemon says where it listens; RuntimeError if it never does."""
        self._ready.wait(START_TIMEOUT)
        if not self.ports:
            self.stop()
            raise RuntimeError("messengerd did not start:\n" + "\n".join(self.log))

    def next_message(self, timeout: float = 10.0) -> dict:
        """The next message the daemon printed; AssertionError after `timeout` seconds."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                "no message arrived; daemon log:\n" + "\n".join(self.log)
            ) from None

    def no_message(self, wait: float = 0.5) -> bool:
        """True when no message arrives within `wait` seconds."""
        time.sleep(wait)
        return self.messages.empty()

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr_reader.join(5)  # every line it logged, up to the last
        if self.process.stdout is not None and not self._reading_stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def names_command(data_dir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`messengerd names ARGS --data-dir DIR` as a user types it; text output."""
    return subprocess.run(
        [sys.executable, "-m", "messengerd", "names", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def request_as_other_user(socket_path: str, request: bytes, uid: int = NOBODY) -> str:
    """Send `request` to a Unix socket as `uid` (needs root) from a forked child.

    Returns the first line the daemon answered, or the name of the OSError the child hit
    (PermissionError when the socket's mode keeps it out).
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never returns into pytest
        result = b""
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(socket_path)
                # A daemon that refuses at once may have answered and closed already.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(request)
                result = sock.makefile("rb").readline()
        except OSError as exc:
            result = type(exc).__name__.encode()
        finally:
            os.write(write_end, result)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(child, 0)
    return answer
