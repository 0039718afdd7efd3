"""How much a flood from the LAN makes a real `messengerd run` log: at the default level a
line per peer and a count, not a line per packet; with -v every one (issue 12, item 9)."""

from __future__ import annotations

import contextlib
import itertools
import socket

import pytest

from messengerd.wire import nbss, smb
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import build_name_registration_request
from tests.daemon_process import DaemonProcess
from tests.e2e.test_run import recv_frame

LOOPBACK = "127.0.0.1"
BOB = NetBIOSName(b"BOB", 0x03)
ALICE = NetBIOSName(b"ALICE", 0x00)
FLOOD = 50
"""Packets of each kind the flood sends."""
WAIT = 10.0
_trn_ids = itertools.count(0x6000)


def d0(sender: bytes, to: bytes, text: bytes = b"spam") -> bytes:
    return nbss.session_message(smb.build_send_message_request(sender, to, text))


def d5(sender: bytes, to: bytes) -> bytes:
    return nbss.session_message(smb.build_send_start_mb_message_request(sender, to))


def flood(daemon: DaemonProcess) -> None:
    """FLOOD of each: messages to a name that is no alias, D5s that replace the last one,
    messages the policy refuses, sessions over the per-source limit, registrations of our
    alias by another node. Each is answered before the next is sent."""
    port = daemon.ports["session"]
    with socket.create_connection((LOOPBACK, port), timeout=WAIT) as sock:
        for _ in range(FLOOD):
            sock.sendall(d0(b"ALICE", b"NOBODY"))  # ERRmsgoff: no session request named BOB
            recv_frame(sock)
        for _ in range(FLOOD):
            sock.sendall(d5(b"ALICE", b"BOB"))  # each drops the unfinished group before it
            recv_frame(sock)
        for _ in range(FLOOD):
            sock.sendall(d0(b"SPAMBOT", b"BOB"))  # refused by the policy (acknowledged)
            recv_frame(sock)
    held = []
    try:
        for _ in range(64 + FLOOD):  # MAX_SESSIONS_PER_SOURCE, and FLOOD more refused
            held.append(socket.create_connection((LOOPBACK, port), timeout=WAIT))
        for sock in held:
            sock.sendall(nbss.session_request(BOB, ALICE))
        for sock in held:
            with contextlib.suppress(ConnectionError):
                sock.recv(4)
    finally:
        for sock in held:
            sock.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        for _ in range(FLOOD):
            claim = build_name_registration_request(next(_trn_ids), BOB, "127.0.0.2")
            sock.sendto(claim, (LOOPBACK, daemon.ports["name"]))
            sock.settimeout(WAIT)
            sock.recvfrom(2048)  # the defence, before the next claim


@pytest.mark.parametrize("verbose", [False, True])
def test_a_flood_logs_a_line_per_peer_and_a_count_at_the_default_level(tmp_path, verbose):
    settings = tmp_path / "messengerd.toml"
    settings.write_text('[policy]\ndeny_senders = ["SPAM*"]\n', encoding="utf-8")
    daemon = DaemonProcess("--alias", "BOB", "--config", str(settings), data_dir=tmp_path / "data",
                           verbose=verbose)  # fmt: skip
    try:
        started = len(daemon.log)
        flood(daemon)
    finally:
        daemon.stop()
    lines = daemon.log[started:]
    if verbose:
        # Every single event: FLOOD of each kind, at least.
        assert len(lines) >= 5 * FLOOD
        return
    # At the default level: the first event from each peer in each place, then its count.
    assert len(lines) <= 12, "\n".join(lines)
    text = "\n".join(lines)
    assert f"{FLOOD - 1} more from 127.0.0.2" in text, "registrations defended, counted"
    assert "more from 127.0.0.1" in text and "session refused x" in text
    assert f"message refused (denied sender) x{FLOOD - 1}" in text
