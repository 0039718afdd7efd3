"""A real `messengerd run` whose outputs are slow or stuck: a message command that takes its
time, a forward target that never answers, a console nobody reads. Each holds a bounded
number of processes, connections and lines; senders and the control channel are served
all the while, and what overflows is counted (issue 12, items 5 and 6)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

from messengerd.control.client import ControlClient
from messengerd.wire import nbss, smb
from messengerd.wire.names import NetBIOSName
from tests.daemon_process import DaemonProcess
from tests.e2e.test_run import recv_frame

LOOPBACK = "127.0.0.1"
BOB = NetBIOSName(b"BOB", 0x03)
ALICE = NetBIOSName(b"ALICE", 0x00)
MESSAGES = 20
CONCURRENCY = 2
QUEUE = 3
WAIT = 10.0
ACK_WAIT = 3.0
"""Seconds a sender may wait for its acknowledgement: storing takes milliseconds (a few
hundred on a busy disk), so a sink that held up senders would show here."""


def send_messages(port: int, texts: list[bytes]) -> list[float]:
    """D0s on one session, each after the last one's reply: how long each reply took."""
    took = []
    with socket.create_connection((LOOPBACK, port), timeout=WAIT) as sock:
        sock.sendall(nbss.session_request(BOB, ALICE))
        assert recv_frame(sock) == nbss.positive_response()
        for text in texts:
            started = time.monotonic()
            sock.sendall(
                nbss.session_message(smb.build_send_message_request(b"ALICE", b"BOB", text))
            )
            reply = recv_frame(sock)[nbss.NBSS_HEADER_LENGTH :]
            took.append(time.monotonic() - started)
            assert int.from_bytes(reply[5:9], "little") == 0, "acknowledged"
    return took


class SilentTarget:
    """A TCP listener that accepts every connection and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    connection.close()
                    return
                self.connections.append(connection)

    def close(self) -> None:
        """Stop listening (shutdown wakes the accept() blocked in the thread: close alone
        would leave it listening) and reset every connection."""
        with self._lock:
            self._closed = True
            for connection in self.connections:
                connection.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(WAIT)
        self.sock.close()


def most_at_once(folder: Path, seconds: float) -> int:
    """The most files seen in `folder` at once over `seconds` (one per running command)."""
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, len(os.listdir(folder)))
        time.sleep(0.005)
    return most


def test_a_slow_command_and_a_silent_forward_target_stay_at_their_bounds(tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    release = tmp_path / "release"
    # Each command marks itself running, then waits for the test to release them all.
    script = f"touch {running}/$$; until [ -e {release} ]; do sleep 0.05; done; rm {running}/$$"
    target = SilentTarget()
    settings = tmp_path / "messengerd.toml"
    settings.write_text(
        f"""
        [[sink]]
        type = "console"

        [[sink]]
        type = "command"
        name = "slow"
        command = "/bin/sh -c '{script}'"
        concurrency = {CONCURRENCY}
        queue = {QUEUE}

        [[sink]]
        type = "forward"
        name = "relay"
        host = "{LOOPBACK}"
        port = {target.port}
        via = "session"
        timeout = 20
        concurrency = {CONCURRENCY}
        queue = {QUEUE}
        """,
        encoding="utf-8",
    )
    daemon = DaemonProcess("--alias", "BOB", "--config", str(settings), data_dir=tmp_path / "data",
                           verbose=False)  # fmt: skip
    try:
        took = send_messages(daemon.ports["session"], [b"alert %d" % n for n in range(MESSAGES)])
        assert max(took) < ACK_WAIT, took
        # The console is not held up by the others: every message is printed.
        assert [daemon.next_message()["text"] for _ in range(MESSAGES)] == [
            f"alert {n}" for n in range(MESSAGES)
        ]
        assert most_at_once(running, 0.5) == CONCURRENCY, "commands running at once"
        assert len(target.connections) == CONCURRENCY, "connections to the silent target"
        overflow = ControlClient(daemon.data_dir).request("status")["sink_overflow"]
        dropped = MESSAGES - CONCURRENCY - QUEUE
        assert overflow == {"slow": dropped, "relay": dropped}
    finally:
        release.touch()  # the commands under way end, and those queued end at once
        target.close()  # the forwards under way fail now, and stop need not wait for them
        assert daemon.stop() == 0, "\n".join(daemon.log)
    summaries = [line for line in daemon.log if "message not delivered" in line]
    assert len(summaries) == 4, summaries  # per sink: the first, then the count at stop
    assert f"{dropped - 1} more from sink slow" in "\n".join(summaries)


def test_a_console_nobody_reads_holds_up_neither_senders_nor_the_control_channel(tmp_path):
    settings = tmp_path / "messengerd.toml"
    settings.write_text('[[sink]]\ntype = "console"\nqueue = 4\n', encoding="utf-8")
    daemon = DaemonProcess("--alias", "BOB", "--config", str(settings), data_dir=tmp_path / "data",
                           read_stdout=False)  # fmt: skip
    try:
        # 60 lines of some 3 KiB: three times what a pipe holds (64 KiB), and nobody reads.
        texts = [b"%02d " % n + b"x" * 3000 for n in range(60)]
        took = send_messages(daemon.ports["session"], texts)
        assert max(took) < ACK_WAIT, took
        status = ControlClient(daemon.data_dir).request("status")
        assert status["messages_received"] == 60
        assert status["sink_overflow"]["console"] > 0
    finally:
        stopped = time.monotonic()
        assert daemon.stop() == 0
    assert time.monotonic() - stopped < WAIT
    assert any("message(s) not printed (the inbox has them)" in line for line in daemon.log)
