"""The forward sink relays to a real messengerd receiver on loopback, From and text intact."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from messengerd.core.message import Message
from messengerd.delivery.forward import ForwardSink
from messengerd.sender import MAX_SESSION_TEXT_BYTES
from tests.daemon_process import DaemonProcess


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    """The other messenger host: a real `messengerd run` holding the alias ALICE."""
    data_dir = tmp_path_factory.mktemp("receiver")
    with DaemonProcess("--alias", "ALICE", "--alias", "DESK", data_dir=data_dir) as process:
        yield process


def forward(receiver: DaemonProcess, **options) -> ForwardSink:
    options.setdefault("host", "127.0.0.1")
    return ForwardSink(
        port=receiver.ports["session"], datagram_port=receiver.ports["datagram"], **options
    )


def received(sender: str, recipient: str, raw: bytes, *, codepage: str = "cp850") -> Message:
    """A message as the daemon makes it from the wire (the `raw` bytes kept)."""
    return Message.from_wire(
        sender.encode(codepage),
        recipient.encode(codepage),
        raw,
        path="mailslot",
        peer="192.0.2.9:138",
        codepage=codepage,
    )


def test_forward_keeps_the_sender_and_text_and_sends_to_the_alias(receiver):
    sink = forward(receiver, to="ALICE")
    asyncio.run(sink.deliver(received("UPS-01", "BOB", b"On battery\x14Runtime 12 min")))
    message = receiver.next_message()
    assert (message["from"], message["to"], message["text"]) == (
        "UPS-01",
        "ALICE",
        "On battery\nRuntime 12 min",
    )
    assert message["path"] == "session"


def test_without_to_the_original_recipient_is_used(receiver):
    sink = forward(receiver)
    asyncio.run(sink.deliver(received("ADMIN", "DESK", b"Backup finished")))
    message = receiver.next_message()
    assert (message["from"], message["to"], message["text"]) == (
        "ADMIN",
        "DESK",
        "Backup finished",
    )


def test_the_original_oem_bytes_go_out_unchanged(receiver):
    raw = "Kühlraum: 7 °C — prüfen".encode("cp850", errors="replace")
    sink = forward(receiver, to="ALICE")
    asyncio.run(sink.deliver(received("KÄLTE", "BOB", raw)))
    message = receiver.next_message()
    assert message["from"] == "KÄLTE"
    assert message["text"] == raw.decode("cp850")


def test_a_long_message_goes_as_several_in_order(receiver):
    raw = b"".join(bytes([0x41 + index]) * MAX_SESSION_TEXT_BYTES for index in range(2)) + b"C"
    sink = forward(receiver, to="ALICE")
    asyncio.run(sink.deliver(received("PRINTQUOTA", "BOB", raw)))
    texts = [receiver.next_message()["text"] for _ in range(3)]
    assert texts == ["A" * MAX_SESSION_TEXT_BYTES, "B" * MAX_SESSION_TEXT_BYTES, "C"]


def test_forward_over_the_mailslot(receiver):
    sink = forward(receiver, to="ALICE", via="mailslot")
    asyncio.run(sink.deliver(received("UPS-01", "BOB", b"via datagram")))
    message = receiver.next_message()
    assert (message["text"], message["path"]) == ("via datagram", "mailslot")


def test_forward_by_name_finds_the_host_with_a_name_query(receiver):
    sink = ForwardSink(
        to="ALICE",
        broadcast="127.255.255.255",
        name_port=receiver.ports["name"],
        port=receiver.ports["session"],
        datagram_port=receiver.ports["datagram"],
    )
    asyncio.run(sink.deliver(received("ADMIN", "BOB", b"found by name")))
    message = receiver.next_message()
    assert (message["to"], message["text"]) == ("ALICE", "found by name")


def test_an_unreachable_host_is_logged_not_raised(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sink = ForwardSink("127.0.0.1", to="ALICE", via="session", port=closed_port)
    with caplog.at_level(logging.ERROR, logger="messengerd.delivery.forward"):
        asyncio.run(sink.deliver(received("ADMIN", "BOB", b"nobody home")))
    assert "forward: cannot forward to ALICE at 127.0.0.1: NERR_NetworkError" in caplog.text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "needs a host, or a `to` alias"),
        ({"host": "127.0.0.1", "via": "carrier-pigeon"}, "via 'carrier-pigeon'"),
        ({"host": "127.0.0.1", "codepage": "cp9999"}, "unknown code page"),
    ],
)
def test_bad_options_are_refused_when_the_sink_is_made(options, problem):
    with pytest.raises(ValueError, match=problem):
        ForwardSink(**options)
