"""SessionClient, the caller side of a session, driven with bytes only ([MS-MSRP] §3.2.4.4,
RFC 1002 §4.3, PROTOCOL.md §3-4)."""

from __future__ import annotations

import pytest

from messengerd.protocol.events import NEED_DATA, PAUSED, CloseConnection, MessageAccepted, SendData
from messengerd.protocol.session import SessionMachine
from messengerd.protocol.session_client import (
    Awaiting,
    MessageDelivered,
    MessageRejected,
    ProtocolError,
    SessionClient,
    SessionRefused,
)
from messengerd.wire import nbss, smb
from messengerd.wire.names import NetBIOSName
from tests.helpers import Names, drain
from tests.unit.wire.test_smb_wire import PROTOCOL_MD_D0

BOB = NetBIOSName(b"BOB", 0x03)
ALICE = NetBIOSName(b"ALICE", 0x00)
SAMBA = "samba-smbclient-nmbd-netns.pcap"


def client(text: bytes = b"Hi", *, single_block: bool = True, **options) -> SessionClient:
    return SessionClient(b"ALICE", BOB, text, calling=ALICE, single_block=single_block, **options)


def reply(command: int, status: int = 0, body: bytes = b"\x00\x00\x00") -> bytes:
    """A receiver's reply to `command` with `status`."""
    header = b"\xffSMB" + bytes([command]) + status.to_bytes(4, "little") + b"\x80" + bytes(22)
    return nbss.session_message(header + body)


def test_d0_from_alice_to_bob_is_the_protocol_md_example():
    assert client(session_request=False).start() == PROTOCOL_MD_D0


def test_a_session_request_to_the_alias_comes_first_and_a_positive_answer_brings_the_d0():
    c = client()
    assert c.start() == nbss.session_request(BOB, ALICE)
    assert c.next_event() is NEED_DATA
    c.receive_data(nbss.positive_response())
    assert c.next_event() == SendData(PROTOCOL_MD_D0)
    c.receive_data(reply(smb.SMB_COM_SEND_MESSAGE))
    assert c.next_event() == MessageDelivered(1, multi_block=False)
    assert c.next_event() is NEED_DATA


def test_d5_d7_d6_bodies_are_those_smbclient_sent_to_smbd(capture):
    from messengerd.decode.capture import read_segments

    frames = {s.frame: s.payload for s in read_segments(capture(SAMBA))}
    recvr = NetBIOSName(b"RECVR", 0x03)
    text = b"netns test line1\r\nline2\r\n"
    c = SessionClient(
        b"alice", recvr, text, calling=ALICE, single_block=False, session_request=False
    )
    body = slice(nbss.NBSS_HEADER_LENGTH + smb.SMB_HEADER_LENGTH, None)
    assert c.start()[body] == frames[102][body]
    # smbd answers D5 with WordCount 0: no MessageGroupId, and smbclient then sends 0.
    c.receive_data(reply(smb.SMB_COM_SEND_START_MB_MESSAGE))
    assert c.next_event().data[body] == frames[104][body]
    c.receive_data(reply(smb.SMB_COM_SEND_TEXT_MB_MESSAGE))
    assert c.next_event().data[body] == frames[106][body]


def test_long_text_goes_in_128_byte_d7_blocks_of_the_group_the_d5_reply_gave():
    text = bytes(range(33, 127)) * 4
    c = client(text, single_block=False, session_request=False)
    c.start()
    c.receive_data(reply(smb.SMB_COM_SEND_START_MB_MESSAGE, body=b"\x01\x07\x00\x00\x00"))
    blocks = []
    for _ in range(3):
        request = c.next_event().data
        group = int.from_bytes(request[37:39], "little")
        length = int.from_bytes(request[42:44], "little")
        blocks.append((group, request[44 : 44 + length]))
        c.receive_data(reply(smb.SMB_COM_SEND_TEXT_MB_MESSAGE))
    assert [len(block) for _, block in blocks] == [128, 128, 120]
    assert b"".join(block for _, block in blocks) == text
    assert {group for group, _ in blocks} == {7}
    assert c.awaiting is Awaiting.SEND_TEXT
    end = c.next_event().data
    assert end[8] == smb.SMB_COM_SEND_END_MB_MESSAGE and end[37:39] == b"\x07\x00"
    c.receive_data(reply(smb.SMB_COM_SEND_END_MB_MESSAGE))
    assert c.next_event() == MessageDelivered(3, multi_block=True)


def test_a_negative_session_response_refuses_the_name():
    c = client()
    c.start()
    c.receive_data(nbss.negative_response(nbss.CALLED_NAME_NOT_PRESENT))
    event = c.next_event()
    assert isinstance(event, SessionRefused) and "Called name not present" in event.reason


def test_a_close_during_the_d0_is_told_apart_from_one_during_the_session_request():
    during_session = client()
    during_session.start()
    during_session.receive_data(b"")
    assert isinstance(during_session.next_event(), CloseConnection)
    assert during_session.ended_awaiting is Awaiting.SESSION

    during_d0 = client(session_request=False)
    during_d0.start()
    during_d0.receive_data(b"")
    assert isinstance(during_d0.next_event(), CloseConnection)
    assert during_d0.ended_awaiting is Awaiting.SEND_MESSAGE


def test_an_error_reply_is_a_rejection_and_errunknownsmb_says_so():
    c = client(session_request=False)
    c.start()
    c.receive_data(reply(smb.SMB_COM_SEND_MESSAGE, smb.ERROR_UNKNOWN_SMB.dos_status))
    event = c.next_event()
    assert isinstance(event, MessageRejected) and event.unknown_command
    c = client(session_request=False)
    c.start()
    c.receive_data(reply(smb.SMB_COM_SEND_MESSAGE, smb.ERROR_NO_ROOM.dos_status))
    event = c.next_event()
    assert isinstance(event, MessageRejected) and not event.unknown_command
    assert smb.describe_status(event.reply) == "ERRSRV/ERRnoroom (no room for the message)"


def test_keepalives_are_skipped_and_replies_split_anywhere_are_read_whole():
    c = client(session_request=False)
    c.start()
    stream = nbss.keepalive() + reply(smb.SMB_COM_SEND_MESSAGE)
    for byte in stream:
        assert c.next_event() is NEED_DATA
        c.receive_data(bytes([byte]))
    assert c.next_event() == MessageDelivered(1, multi_block=False)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (nbss.retarget_response("127.0.0.2", 139), "retargeted"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a NetBIOS session service"),
        (nbss.session_message(b"\xffSMB" + bytes(28)), "SMB_COM_SEND_MESSAGE"),
        (bytes([0, 1, 0xFF, 0xFF]), "exceeds"),
    ],
)
def test_what_is_not_a_receivers_answer_is_a_protocol_error(answer: bytes, said: str):
    c = client(session_request=answer[0] == nbss.RETARGET_SESSION_RESPONSE)
    c.start()
    c.receive_data(answer)
    event = c.next_event()
    assert isinstance(event, ProtocolError) and said in event.reason, event


@pytest.mark.parametrize("single_block", [True, False])
def test_the_client_and_the_server_machine_carry_a_message_between_them(single_block: bool):
    text = b"x" * (100 if single_block else 300)
    c = client(text, single_block=single_block)
    server = SessionMachine(Names(local=[BOB]))
    received = []
    server.receive_data(c.start())
    while True:
        for event in drain(server):
            if isinstance(event, SendData):
                c.receive_data(event.data)
            else:
                received.append(event)
        if server.next_event() is PAUSED:
            c.receive_data(server.send(MessageAccepted()))
        event = c.next_event()
        if isinstance(event, MessageDelivered):
            break
        assert isinstance(event, SendData), event
        server.receive_data(event.data)
    assert [(m.sender, m.recipient, m.text) for m in received] == [(b"ALICE", b"BOB", text)]
