"""Samba's own client, `smbclient -M`, delivers to messengerd on a loopback high port."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.conftest import need_tool
from tests.daemon_process import DaemonProcess
from tests.helpers import free_port

pytestmark = pytest.mark.interop


@pytest.fixture
def daemon(tmp_path):
    with DaemonProcess("--alias", "BOB", data_dir=tmp_path) as process:
        yield process


def smbclient_message(
    port: int, text: bytes, *, to: str = "BOB", sender: str = "ALICE", charset: str = "CP850"
) -> subprocess.CompletedProcess:
    """`smbclient -M TO` on a high port: it then sends D5/D7/D6 with no session request."""
    smbclient = need_tool("smbclient", "smbclient")
    return subprocess.run(
        [
            smbclient, "-M", to, "-I", "127.0.0.1", "-p", str(port), "-N",
            "-U", sender, f"--option=dos charset={charset}", "--option=unix charset=UTF-8",
        ],
        input=text,
        capture_output=True,
        timeout=30,
    )  # fmt: skip


def test_ascii_message_arrives(daemon):
    result = smbclient_message(daemon.ports["session"], b"Server room is on fire")
    assert result.returncode == 0, result.stderr
    message = daemon.next_message()
    assert message["text"] == "Server room is on fire"
    assert message["from"] == "ALICE"
    assert message["to"] == "BOB"
    assert message["path"] == "session"
    assert message["peer"].startswith("127.0.0.1:")


def test_cp850_umlauts_arrive_as_sent(daemon):
    smbclient_message(daemon.ports["session"], "Grüße aus Köln".encode())
    assert daemon.next_message()["text"] == "Grüße aus Köln"


def test_1000_byte_text_arrives_whole(daemon):
    text = ("0123456789abcdefghijklmnopqrstuvwxyz" * 30)[:1000]
    smbclient_message(daemon.ports["session"], text.encode())
    assert daemon.next_message()["text"] == text


def test_multi_line_text_keeps_its_lines(daemon):
    smbclient_message(daemon.ports["session"], b"line one\nline two\nline three")
    assert daemon.next_message()["text"] == "line one\nline two\nline three"


def test_sender_name_with_a_space(daemon):
    smbclient_message(daemon.ports["session"], b"hello", sender="John Smith")
    assert daemon.next_message()["from"] == "John Smith"


def test_message_to_an_unknown_alias_is_refused_and_not_delivered(daemon):
    result = smbclient_message(daemon.ports["session"], b"not for you", to="CAROL")
    assert daemon.no_message()
    assert result.returncode != 0 or b"NT_STATUS" in result.stdout + result.stderr


def test_two_messages_in_a_row(daemon):
    smbclient_message(daemon.ports["session"], b"first")
    smbclient_message(daemon.ports["session"], b"second")
    assert [daemon.next_message()["text"] for _ in range(2)] == ["first", "second"]


def test_smbclient_is_not_refused_while_the_alias_is_being_registered(tmp_path):
    """smbclient -M exits 0 even when told ERRmsgoff: only the message arriving shows that
    it was taken. Its first run is sent the moment the session port opens, while BOB<03> is
    still being registered (750 ms of waiting for objections)."""
    ports = (free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port())
    daemon = DaemonProcess("--alias", "BOB", data_dir=tmp_path, ports=ports, wait=False)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", ports[2]), timeout=1).close()
                break
            except ConnectionRefusedError:
                time.sleep(0.005)
        sent = []
        while not daemon.ports or not sent:
            text = f"during start {len(sent)}"
            was_ready = bool(daemon.ports)
            assert smbclient_message(ports[2], text.encode()).returncode == 0
            sent.append((was_ready, text))
        daemon.wait_ready()
        assert not sent[0][0], "the first message went out before the names were ready"
        arrived = sorted(daemon.next_message()["text"] for _ in sent)
        assert arrived == sorted(text for _, text in sent)
    finally:
        daemon.stop()
