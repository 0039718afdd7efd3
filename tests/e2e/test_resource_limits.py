"""A real `messengerd run` at its limits: the open-file limit raised and the sessions sized
to it, and idle sessions closed after the settings' `session_idle_timeout` (issue 12,
items 7 and 8)."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

from messengerd.core.limits import FD_RESERVE
from messengerd.wire import nbss
from messengerd.wire.names import NetBIOSName
from tests.daemon_process import DaemonProcess
from tests.e2e.test_start_and_stop import send_d0

LOOPBACK = "127.0.0.1"
BOB = NetBIOSName(b"BOB", 0x03)
ALICE = NetBIOSName(b"ALICE", 0x00)
HARD_LIMIT = 400
"""The daemon's hard RLIMIT_NOFILE here: room for HARD_LIMIT - FD_RESERVE sessions."""
SOURCES = [f"127.0.0.{host}" for host in range(1, 5)]
"""Senders on four loopback addresses, each under the per-source session limit."""
WAIT = 10.0


def low_soft_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD_LIMIT))


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def session(source: str, port: int) -> tuple[socket.socket, bool]:
    """A session from `source`: the socket, and whether the daemon took it."""
    sock = socket.socket()
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    sock.connect((LOOPBACK, port))
    try:
        sock.sendall(nbss.session_request(BOB, ALICE))
        taken = sock.recv(4) == nbss.positive_response()
    except ConnectionError:
        taken = False
    return sock, taken


def test_sessions_are_sized_to_the_open_file_limit_raised_at_start(tmp_path):
    daemon = DaemonProcess(
        "--alias", "BOB", data_dir=tmp_path, verbose=False, preexec_fn=low_soft_limit
    )
    sockets: list[socket.socket] = []
    try:
        assert open_files_limit(daemon.process.pid) == (HARD_LIMIT, HARD_LIMIT)
        limit = HARD_LIMIT - FD_RESERVE
        assert any(f"at most {limit} sessions" in line for line in daemon.log)
        taken = 0
        for number in range(limit + 60):
            sock, ok = session(SOURCES[number % len(SOURCES)], daemon.ports["session"])
            sockets.append(sock)
            taken += ok
        assert taken == limit
        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + WAIT
        while send_d0(daemon.ports["session"], b"BOB", b"after", session_request=True)[0] != (
            nbss.positive_response()
        ):
            assert time.monotonic() < deadline, "sessions were not freed"
            time.sleep(0.05)
        assert daemon.next_message()["text"] == "after"
    finally:
        for sock in sockets:
            sock.close()
        daemon.stop()
    assert not any("Traceback" in line for line in daemon.log), daemon.log


def test_the_settings_file_sets_the_session_idle_timeout(tmp_path):
    settings = tmp_path / "messengerd.toml"
    settings.write_text("[daemon]\nsession_idle_timeout = 0.5\n", encoding="utf-8")
    with DaemonProcess("--alias", "BOB", "--config", str(settings), data_dir=tmp_path) as daemon:
        sock = socket.create_connection((LOOPBACK, daemon.ports["session"]), timeout=WAIT)
        with sock:
            started = time.monotonic()
            sock.sendall(nbss.session_request(BOB, ALICE))
            assert sock.recv(4) == nbss.positive_response()
            assert sock.recv(1) == b"", "closed for completing no frame"
            assert 0.4 <= time.monotonic() - started < WAIT
