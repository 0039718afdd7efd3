"""The sender's wire bytes, its checks and its result codes, without a receiver
(PROTOCOL.md §4-5, §7; [MS-MSRP] §3.2.4.4)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender import (
    CRLF,
    MAX_MAILSLOT_TEXT_BYTES,
    MAX_SESSION_TEXT_BYTES,
    computer_name,
    net_message_buffer_send,
    prepare_message,
    resolve_name,
    send_mailslot,
    send_message,
)
from messengerd.wire.datagram import (
    MESSENGER_DATAGRAM_BYTES,
    MESSENGER_MAILSLOT,
    DirectDatagram,
    parse_datagram,
    parse_mailslot_write,
    parse_messenger_payload,
)
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import build_negative_name_query_response, parse_nbns


def invalid(call) -> NetError:
    """The NetError `call()` raises; it must be ERROR_INVALID_PARAMETER."""
    with pytest.raises(NetError) as caught:
        call()
    assert caught.value.code == lmerr.ERROR_INVALID_PARAMETER, caught.value
    return caught.value


def test_line_breaks_go_out_as_0x14_by_default_and_crlf_on_request():
    assert prepare_message("BOB", "one\ntwo\r\nthree").text == b"one\x14two\x14three"
    crlf = prepare_message("BOB", "one\ntwo", line_break=CRLF)
    assert crlf.text == b"one\r\ntwo"


def test_text_and_names_are_sent_in_the_oem_code_page():
    message = prepare_message("jürgen", "Grüße", fromname="Zoë", codepage="cp850")
    assert message.recipient == NetBIOSName("JÜRGEN".encode("cp850"), 0x03)
    assert message.text == "Grüße".encode("cp850")
    assert message.sender == "Zoë".encode("cp850")


def test_default_sender_is_this_computer_name():
    message = prepare_message("BOB", "hi")
    assert message.sender == computer_name().encode("cp850")
    assert message.calling == NetBIOSName(computer_name().encode("cp850"), 0x00)
    assert len(message.sender) <= 15


@pytest.mark.parametrize(
    "name",
    ["", "SIXTEEN-LETTERSS", "名前"],
    ids=["empty", "16 bytes", "not in cp850"],
)
def test_a_bad_message_name_is_error_invalid_parameter(name):
    invalid(lambda: prepare_message(name, "hi"))


def test_over_long_text_is_error_invalid_parameter_per_path():
    longest = "x" * MAX_SESSION_TEXT_BYTES
    assert len(prepare_message("BOB", longest, via="session").text) == MAX_SESSION_TEXT_BYTES
    invalid(lambda: prepare_message("BOB", longest + "x", via="session"))
    invalid(lambda: prepare_message("BOB", longest + "x", via="auto"))
    assert prepare_message("BOB", longest + "x", via="mailslot")
    invalid(lambda: prepare_message("BOB", "x" * (MAX_MAILSLOT_TEXT_BYTES + 1), via="mailslot"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "a\x00b"},
        {"text": "Ω is not in cp850"},
        {"fromname": ""},
        {"fromname": "x" * 257},
        {"via": "carrier pigeon"},
        {"codepage": "cp99999"},
    ],
    ids=["NUL in text", "text not in cp850", "empty from", "long from", "via", "codepage"],
)
def test_bad_arguments_are_error_invalid_parameter(kwargs):
    arguments = {"text": "hello"} | kwargs
    text = arguments.pop("text")
    invalid(lambda: prepare_message("BOB", text, **arguments))


@pytest.mark.parametrize(
    "kwargs",
    [{"host": "bob.example"}, {"host": "127.0.0.1", "port": 0}, {"broadcast": "everyone"}],
    ids=["host not an address", "port 0", "broadcast not an address"],
)
def test_bad_network_options_are_error_invalid_parameter(kwargs):
    invalid(lambda: net_message_buffer_send("BOB", "hi", **kwargs))


def test_sending_through_another_server_is_not_supported():
    with pytest.raises(NetError) as caught:
        net_message_buffer_send("BOB", "hi", servername=r"\\FILESERVER", host="127.0.0.1")
    assert caught.value.code == lmerr.ERROR_NOT_SUPPORTED


def test_blocking_call_inside_an_event_loop_says_to_await_send_message():
    async def misuse() -> None:
        net_message_buffer_send("BOB", "hi", host="127.0.0.1")

    with pytest.raises(RuntimeError, match="await send_message"):
        asyncio.run(misuse())


@pytest.fixture
def udp_listener():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


def test_mailslot_message_is_whole_datagrams_of_about_424_bytes(udp_listener):
    text = ("Battery low. " * 80).encode("cp850")
    message = prepare_message("BOB", text, fromname="UPS", via="mailslot")
    delivery = send_mailslot(message, "127.0.0.1", udp_listener.getsockname()[1])
    received = [udp_listener.recvfrom(2048) for _ in range(delivery.pieces)]
    assert delivery.pieces > 1
    sizes = [len(data) for data, _ in received]
    assert set(sizes[:-1]) == {MESSENGER_DATAGRAM_BYTES}
    assert sizes[-1] <= MESSENGER_DATAGRAM_BYTES
    pieces = []
    for data, (peer_ip, peer_port) in received:
        datagram = parse_datagram(data)
        assert isinstance(datagram, DirectDatagram)
        assert datagram.destination_name == NetBIOSName(b"BOB", 0x03)
        assert (datagram.source_ip, datagram.source_port) == (peer_ip, peer_port)
        write = parse_mailslot_write(datagram.user_data)
        assert write.mailslot_name == MESSENGER_MAILSLOT
        sender, recipient, piece = parse_messenger_payload(write.data)
        assert (sender, recipient) == (b"UPS", b"BOB")
        pieces.append(piece)
    assert b"".join(pieces) == text


def test_negative_name_query_answer_is_nerr_name_not_found_at_once(udp_listener):
    """A name server (or nmbd asked directly) answering NAM_ERR ends the search."""
    name = NetBIOSName(b"CAROL", 0x03)

    async def resolve() -> str:
        loop = asyncio.get_running_loop()

        def answer() -> None:
            data, peer = udp_listener.recvfrom(2048)
            query = parse_nbns(data)
            udp_listener.sendto(build_negative_name_query_response(query.trn_id, query.name), peer)

        answering = loop.run_in_executor(None, answer)
        try:
            return await resolve_name(
                name, broadcast="127.0.0.1", port=udp_listener.getsockname()[1], interval=5.0
            )
        finally:
            await answering

    with pytest.raises(NetError) as caught:
        asyncio.run(resolve())
    assert caught.value.code == lmerr.NERR_NameNotFound
    assert "not found" in caught.value.detail


def test_send_message_to_a_name_nobody_holds_is_nerr_name_not_found():
    """Three broadcast queries, heard by a silent listener (RFC 1002 §4.2.12)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        # Only a socket bound to the broadcast address itself hears broadcasts on loopback.
        listener.bind(("127.255.255.255", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        with pytest.raises(NetError) as caught:
            asyncio.run(send_message("CAROL", "hi", broadcast="127.255.255.255", name_port=port))
        queries = [parse_nbns(listener.recvfrom(2048)[0]) for _ in range(3)]
    assert caught.value.code == lmerr.NERR_NameNotFound
    assert {query.name for query in queries} == {NetBIOSName(b"CAROL", 0x03)}
    assert all(query.broadcast for query in queries)
