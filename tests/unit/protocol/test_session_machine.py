"""SessionMachine, driven with bytes only (RFC 1002 §4.3, [MS-MSRP] §2.2.3, PROTOCOL.md §3-4)."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.smb import SMB_Header

from messengerd.core import limits
from messengerd.protocol.events import (
    CloseConnection,
    Dropped,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    SendData,
)
from messengerd.protocol.session import (
    FIRST_MESSAGE_GROUP_ID,
    SessionMachine,
    SessionState,
    SessionStateError,
)
from messengerd.wire import nbss, smb
from messengerd.wire.layers import nbss as nbss_layers
from messengerd.wire.layers import smb as smb_layers
from messengerd.wire.names import NetBIOSName
from tests.helpers import Names, converse, drain, messages, take

BOB = NetBIOSName(b"BOB", 0x03)
ALICE_WORKSTATION = NetBIOSName(b"ALICE", 0x00)


def Aliases(*names: NetBIOSName) -> Names:
    """A Directory holding a fixed set of unique names."""
    return Names(local=names)


def machine(**options) -> SessionMachine:
    return SessionMachine(Aliases(BOB), **options)


def frame(body, **header) -> bytes:
    """A message command request in a SESSION MESSAGE, header all zero but `header`."""
    return nbss.session_message(SMB_Header(**{"Flags": 0, **header}) / body)


def d0(text: bytes = b"Hi", sender: bytes = b"ALICE", to: bytes = b"BOB", **header) -> bytes:
    body = smb_layers.SMBSendMessageRequest(OriginatorName=sender, DestinationName=to, Data=text)
    return frame(body, **header)


def d5(sender: bytes = b"ALICE", to: bytes = b"BOB", **header) -> bytes:
    return frame(
        smb_layers.SMBSendStartMBMessageRequest(OriginatorName=sender, DestinationName=to), **header
    )


def d7(group: int, text: bytes, **header) -> bytes:
    return frame(smb_layers.SMBSendTextMBMessageRequest(MessageGroupId=group, Data=text), **header)


def d6(group: int, **header) -> bytes:
    return frame(smb_layers.SMBSendEndMBMessageRequest(MessageGroupId=group), **header)


def other_command(command: int) -> bytes:
    """An SMB with WordCount 0, ByteCount 0 and any command."""
    return nbss.session_message(raw(SMB_Header(Command=command, Flags=0)) + b"\x00\x00\x00")


def session_request(called: NetBIOSName = BOB) -> bytes:
    return nbss.session_request(called, ALICE_WORKSTATION)


def replies(events) -> list[SMB_Header]:
    """The SMB headers of every SendData that carries an SMB."""
    return [
        nbss_layers.parse_frame(event.data)[SMB_Header]
        for event in events
        if isinstance(event, SendData) and event.data[0] == nbss.SESSION_MESSAGE
    ]


def closes(events) -> list[CloseConnection]:
    return [event for event in events if isinstance(event, CloseConnection)]


def status_of(reply: SMB_Header) -> int:
    return reply.Status


def feed(m: SessionMachine, data: bytes) -> list:
    """Everything the machine answers to `data`, storing each message as it comes."""
    return converse(m, data)


def test_d0_is_delivered_and_not_acknowledged_before_storage():
    m = machine()
    events = take(m, d0(b"Hello Bob"))
    assert events == [
        MessageReceived(sender=b"ALICE", recipient=b"BOB", text=b"Hello Bob", path="session")
    ]
    assert m.message_pending


def test_d0_success_reply_follows_message_stored_and_echoes_the_request():
    m = machine()
    take(m, d0(MID=0x1234, PIDLow=0x5678, TID=7, UID=9, Flags=0x08))
    reply = nbss_layers.parse_frame(m.send(MessageAccepted()))
    assert type(reply[SMB_Header].payload) is smb_layers.SMBSendMessageResponse
    header = reply[SMB_Header]
    assert header.Status == smb.STATUS_SUCCESS
    assert int(header.Flags) == smb.SMB_FLAGS_REPLY | smb.SMB_FLAGS_CASE_INSENSITIVE
    assert (header.MID, header.PIDLow, header.TID, header.UID) == (0x1234, 0x5678, 7, 9)
    assert not m.message_pending


def test_protocol_md_d0_example_is_delivered():
    example = (
        b"\x00\x00\x00\x34\xffSMB\xd0"
        + bytes(27)
        + b"\x00\x11\x00\x04ALICE\x00\x04BOB\x00\x01\x02\x00Hi"
    )
    assert messages(take(machine(), example))[0].text == b"Hi"


def test_message_refused_answers_no_room():
    m = machine()
    take(m, d0())
    reply = nbss_layers.parse_frame(m.send(MessageRefused()))[SMB_Header]
    assert reply.Status == smb.ERROR_NO_ROOM.dos_status
    assert not m.message_pending


def test_message_refused_can_say_messaging_is_off():
    m = machine()
    take(m, d0())
    reply = nbss_layers.parse_frame(m.send(MessageRefused("not_an_alias")))[SMB_Header]
    assert reply.Status == smb.ERROR_MESSAGING_OFF.dos_status


def test_message_stored_without_a_pending_message_raises():
    m = machine()
    with pytest.raises(SessionStateError):
        m.send(MessageAccepted())
    take(m, d0())
    m.send(MessageAccepted())
    with pytest.raises(SessionStateError):
        m.send(MessageRefused())


def test_over_long_d0_text_is_refused_with_no_room_and_not_delivered():
    events = take(machine(), d0(b"x" * (limits.MAX_TEXT_BYTES + 1)))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_NO_ROOM.dos_status]


def test_d0_of_exactly_the_text_limit_is_delivered():
    text = b"y" * limits.MAX_TEXT_BYTES
    assert messages(take(machine(), d0(text)))[0].text == text


# SMB_COM_SEND_START_MB_MESSAGE, TEXT_MB, END_MB (D5, D7, D6)


def test_d5_d7_d6_with_three_blocks_is_delivered_with_exact_text():
    m = machine()
    start = replies(take(m, d5()))
    group = start[0][smb_layers.SMBSendStartMBMessageResponse].MessageGroupId
    blocks = [b"A" * 128, b"line two\r\n", b"\x14end \x81\xe1"]
    for block in blocks:
        assert [status_of(r) for r in replies(take(m, d7(group, block)))] == [0]
    events = take(m, d6(group))
    assert events == [
        MessageReceived(sender=b"ALICE", recipient=b"BOB", text=b"".join(blocks), path="session")
    ]
    reply = nbss_layers.parse_frame(m.send(MessageAccepted()))
    assert type(reply[SMB_Header].payload) is smb_layers.SMBSendEndMBMessageResponse
    assert reply[SMB_Header].Status == 0


def test_d5_reply_has_word_count_1_and_the_first_group_id():
    reply = replies(take(machine(), d5()))[0]
    body = reply[smb_layers.SMBSendStartMBMessageResponse]
    assert (body.WordCount, body.MessageGroupId) == (1, FIRST_MESSAGE_GROUP_ID)


def test_message_group_ids_increase_within_a_session():
    m = machine()
    ids = []
    for _ in range(3):
        reply = replies(take(m, d5()))[0]
        group = reply[smb_layers.SMBSendStartMBMessageResponse].MessageGroupId
        ids.append(group)
        take(m, d7(group, b"x"))
        take(m, d6(group))
        m.send(MessageAccepted())
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_blocks_above_128_bytes_are_accepted():
    m = machine()
    take(m, d5())
    events = take(m, d7(FIRST_MESSAGE_GROUP_ID, b"z" * 400))
    assert [status_of(r) for r in replies(events)] == [0]
    assert messages(take(m, d6(FIRST_MESSAGE_GROUP_ID)))[0].text == b"z" * 400


def test_d7_without_d5_is_rejected():
    events = take(machine(), d7(0, b"orphan"))
    assert messages(events) == []
    [reply] = replies(events)
    assert reply.Command == smb.SMB_COM_SEND_TEXT_MB_MESSAGE
    assert reply.Status == smb.ERROR_INVALID_PARAMETER.dos_status
    assert any(isinstance(event, Dropped) for event in events)


def test_d6_without_d5_is_rejected():
    events = take(machine(), d6(0))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


def test_d7_without_d5_is_rejected_with_ntstatus_when_asked():
    events = take(machine(), d7(0, b"orphan", Flags2=smb.SMB_FLAGS2_NT_STATUS))
    [reply] = replies(events)
    assert reply.Status == smb.STATUS_INVALID_PARAMETER
    assert int(reply.Flags2) & smb.SMB_FLAGS2_NT_STATUS


def test_d7_with_a_wrong_message_group_id_is_rejected_and_the_group_survives():
    m = machine()
    take(m, d5())
    wrong = FIRST_MESSAGE_GROUP_ID + 1
    assert [status_of(r) for r in replies(take(m, d7(wrong, b"lost")))] == [
        smb.ERROR_INVALID_PARAMETER.dos_status
    ]
    take(m, d7(FIRST_MESSAGE_GROUP_ID, b"kept"))
    assert messages(take(m, d6(FIRST_MESSAGE_GROUP_ID)))[0].text == b"kept"


def test_d6_with_a_wrong_message_group_id_is_rejected():
    m = machine()
    take(m, d5())
    events = take(m, d6(FIRST_MESSAGE_GROUP_ID + 5))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


def test_over_long_multi_block_text_is_refused_and_the_group_discarded():
    m = machine()
    take(m, d5())
    block = b"b" * 1000
    for _ in range(limits.MAX_TEXT_BYTES // len(block)):
        assert [status_of(r) for r in replies(take(m, d7(0, block)))] == [0]
    events = take(m, d7(0, block))
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_NO_ROOM.dos_status]
    events = take(m, d6(0))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


def test_a_new_d5_discards_an_unfinished_group():
    m = machine()
    take(m, d5(sender=b"FIRST"))
    take(m, d7(0, b"never finished"))
    events = take(m, d5(sender=b"SECOND"))
    assert any(isinstance(event, Dropped) for event in events)
    group = replies(events)[0][smb_layers.SMBSendStartMBMessageResponse].MessageGroupId
    take(m, d7(group, b"fresh"))
    [message] = messages(take(m, d6(group)))
    assert (message.sender, message.text) == (b"SECOND", b"fresh")


def test_a_d0_in_the_middle_of_a_group_leaves_the_group_alone():
    m = machine()
    take(m, d5())
    take(m, d7(0, b"first half "))
    assert messages(feed(m, d0(b"single")))[0].text == b"single"
    take(m, d7(0, b"second half"))
    assert messages(take(m, d6(0)))[0].text == b"first half second half"


# Byte stream handling


def test_stream_split_into_1_byte_chunks_still_delivers():
    m = machine()
    stream = session_request() + d5() + d7(0, b"one ") + d7(0, b"two") + d6(0) + d0(b"three")
    events = []
    for i in range(len(stream)):
        events += feed(m, stream[i : i + 1])
    assert [message.text for message in messages(events)] == [b"one two", b"three"]
    assert closes(events) == []


def test_several_frames_in_one_chunk_are_all_answered_in_order():
    m = machine()
    events = feed(m, session_request() + nbss.keepalive() + d5() + d7(0, b"abc") + d6(0))
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["SendData", "SendData", "SendData", "MessageReceived", "SendData"]
    assert events[0].data == nbss.positive_response()
    commands = [reply.Command for reply in replies(events)]
    assert commands == [
        smb.SMB_COM_SEND_START_MB_MESSAGE,
        smb.SMB_COM_SEND_TEXT_MB_MESSAGE,
        smb.SMB_COM_SEND_END_MB_MESSAGE,
    ]


def test_frames_behind_a_pending_message_wait_for_its_acknowledgement():
    m = machine()
    events = take(m, d0(b"first", MID=1) + d0(b"second", MID=2))
    assert [message.text for message in messages(events)] == [b"first"]
    assert take(m, d0(b"third", MID=3)) == []  # still waiting for the store
    first_reply = nbss_layers.parse_frame(m.send(MessageAccepted()))[SMB_Header]
    assert first_reply.MID == 1
    assert [message.text for message in messages(drain(m))] == [b"second"]
    assert nbss_layers.parse_frame(m.send(MessageRefused()))[SMB_Header].MID == 2
    assert [message.text for message in messages(drain(m))] == [b"third"]
    assert nbss_layers.parse_frame(m.send(MessageAccepted()))[SMB_Header].MID == 3
    assert drain(m) == []


def test_a_flood_while_a_message_is_pending_closes_the_session():
    m = machine()
    take(m, d0())
    events = take(m, nbss.keepalive() * (limits.MAX_SESSION_FRAME // 2 + 10))
    assert len(closes(events)) == 1
    assert m.state is SessionState.CLOSED


def test_frame_over_max_session_frame_closes_without_buffering_it():
    m = machine()
    length = limits.MAX_SESSION_FRAME + 1
    events = take(m, bytes([0, length >> 16, (length >> 8) & 0xFF, length & 0xFF]))
    assert len(closes(events)) == 1


def test_frame_of_exactly_max_session_frame_is_read():
    m = machine()
    overhead = len(d0(b"")) - nbss.NBSS_HEADER_LENGTH
    stream = d0(b"t" * (limits.MAX_SESSION_FRAME - overhead))
    assert len(stream) == nbss.NBSS_HEADER_LENGTH + limits.MAX_SESSION_FRAME
    events = take(m, stream)
    assert closes(events) == []
    assert replies(events)[0].Status == smb.ERROR_NO_ROOM.dos_status  # over MAX_TEXT_BYTES


def test_garbage_that_is_not_nbss_closes():
    events = take(machine(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(event) for event in events] == [CloseConnection]


def test_closed_session_ignores_further_data():
    m = machine()
    take(m, b"\x16\x03\x01\x00\xa2")
    assert m.state is SessionState.CLOSED
    assert take(m, d0()) == []


# Session packets


def test_session_request_to_our_alias_gets_a_positive_response():
    m = machine()
    assert take(m, session_request()) == [SendData(b"\x82\x00\x00\x00")]
    assert m.state is SessionState.ESTABLISHED
    assert m.called_name == BOB


def test_unknown_called_name_gets_called_name_not_present_then_close():
    m = machine()
    events = take(m, session_request(NetBIOSName(b"*SMBSERVER", 0x20)))
    assert events[0] == SendData(b"\x83\x00\x00\x01\x82")
    assert isinstance(events[1], CloseConnection)
    assert m.state is SessionState.CLOSED


def test_called_name_must_carry_the_messenger_suffix():
    events = take(machine(), session_request(NetBIOSName(b"BOB", 0x20)))
    assert events[0] == SendData(nbss.negative_response(nbss.CALLED_NAME_NOT_PRESENT))


def test_undecodable_session_request_gets_unspecified_error_then_close():
    body = b"\x20" + b"Q" * 32 + b"\x00" + ALICE_WORKSTATION.encode()
    events = take(machine(), bytes([0x81, 0, 0, len(body)]) + body)
    assert events[0] == SendData(nbss.negative_response(nbss.UNSPECIFIED_ERROR))
    assert isinstance(events[1], CloseConnection)


def test_a_second_session_request_closes():
    m = machine()
    take(m, session_request())
    assert [type(event) for event in take(m, session_request())] == [CloseConnection]


def test_keepalive_is_accepted_silently_before_and_after_the_session_request():
    m = machine()
    assert take(m, nbss.keepalive()) == []
    take(m, session_request())
    assert take(m, nbss.keepalive()) == []
    assert messages(take(m, d0())) != []


@pytest.mark.parametrize(
    "response",
    [nbss.positive_response(), nbss.negative_response(), nbss.retarget_response("10.0.0.1")],
)
def test_a_session_response_from_the_caller_closes(response):
    assert [type(event) for event in take(machine(), response)] == [CloseConnection]


def test_empty_session_message_is_dropped():
    events = take(machine(), b"\x00\x00\x00\x00")
    assert [type(event) for event in events] == [Dropped]


# Addressing


def test_direct_smb_without_session_request_is_accepted():
    m = machine()
    assert messages(take(m, d0(to=b"BOB")))[0].recipient == b"BOB"
    assert m.called_name is None


def test_direct_smb_to_is_compared_as_windows_upper_cases_it():
    assert messages(take(machine(), d0(to=b"bob"))) != []


def test_direct_d0_to_a_non_alias_is_refused_and_not_delivered():
    events = take(machine(), d0(to=b"CAROL"))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_MESSAGING_OFF.dos_status]


def test_direct_d5_to_a_non_alias_is_refused_and_its_blocks_too():
    m = machine()
    events = feed(m, d5(to=b"CAROL") + d7(0, b"x") + d6(0))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [
        smb.ERROR_MESSAGING_OFF.dos_status,
        smb.ERROR_INVALID_PARAMETER.dos_status,
        smb.ERROR_INVALID_PARAMETER.dos_status,
    ]


def test_after_a_session_request_the_to_field_is_recorded_as_sent():
    m = machine()
    take(m, session_request())
    [message] = messages(take(m, d0(to=b"someone else")))
    assert message.recipient == b"someone else"


def test_after_a_session_request_an_empty_to_field_records_the_called_alias():
    m = machine()
    take(m, session_request())
    assert messages(take(m, d0(to=b"")))[0].recipient == b"BOB"


def test_require_session_request_closes_a_session_that_starts_with_smb():
    events = take(machine(require_session_request=True), d0())
    assert [type(event) for event in events] == [CloseConnection]


def test_require_session_request_still_takes_smb_after_the_request():
    m = machine(require_session_request=True)
    take(m, session_request())
    assert messages(take(m, d0())) != []


def test_codepage_decides_how_the_to_field_is_upper_cased():
    umlaut = NetBIOSName("JÜRGEN".encode("cp850"), 0x03)
    m = SessionMachine(Aliases(umlaut), codepage="cp850")
    assert messages(take(m, d0(to="jürgen".encode("cp850")))) != []


def test_from_field_over_the_limit_is_refused():
    events = take(machine(), d0(sender=b"F" * (limits.MAX_FIELD_BYTES + 1)))
    assert messages(events) == []
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


def test_to_field_over_the_limit_is_refused_even_after_a_session_request():
    m = machine()
    take(m, session_request())
    events = take(m, d5(to=b"T" * (limits.MAX_FIELD_BYTES + 1)))
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


# Other SMB


def test_unknown_command_then_a_good_message_on_the_same_session():
    m = machine()
    take(m, session_request())
    events = take(m, other_command(smb.SMB_COM_NEGOTIATE))
    [reply] = replies(events)
    assert reply.Command == smb.SMB_COM_NEGOTIATE
    assert reply.Status == smb.ERROR_UNKNOWN_SMB.dos_status
    assert closes(events) == []
    assert messages(take(m, d0(b"still here"))) != []


@pytest.mark.parametrize(
    "command",
    [
        smb.SMB_COM_SEND_BROADCAST_MESSAGE,
        smb.SMB_COM_FORWARD_USER_NAME,
        smb.SMB_COM_CANCEL_FORWARD,
        smb.SMB_COM_GET_MACHINE_NAME,
        0x25,
        0xD8,
    ],
)
def test_d1_to_d4_and_other_commands_are_answered_unknown_smb(command):
    [reply] = replies(take(machine(), other_command(command)))
    assert (reply.Command, reply.Status) == (command, smb.ERROR_UNKNOWN_SMB.dos_status)


def test_malformed_message_body_gets_an_error_reply_and_the_session_goes_on():
    m = machine()
    header = raw(SMB_Header(Command=smb.SMB_COM_SEND_MESSAGE, Flags=0, MID=5))
    events = take(m, nbss.session_message(header + b"\x00\x09\x00\x04ALICE"))  # no NUL
    [reply] = replies(events)
    assert (reply.MID, reply.Status) == (5, smb.ERROR_INVALID_PARAMETER.dos_status)
    assert messages(take(m, d0())) != []


def test_wrong_word_count_gets_an_error_reply():
    events = take(machine(), frame(smb_layers.SMBSendTextMBMessageRequest(WordCount=2)))
    assert [status_of(r) for r in replies(events)] == [smb.ERROR_INVALID_PARAMETER.dos_status]


def test_smb2_is_not_smb1_and_closes():
    events = take(machine(), nbss.session_message(b"\xfeSMB" + bytes(60)))
    assert [type(event) for event in events] == [CloseConnection]


def test_truncated_smb_header_closes():
    events = take(machine(), nbss.session_message(b"\xffSMB\xd0" + bytes(10)))
    assert [type(event) for event in events] == [CloseConnection]


def test_an_smb_reply_from_the_caller_is_dropped_without_answer():
    request = nbss_layers.parse_frame(d0())[SMB_Header]
    reply = nbss.session_message(smb_layers.success_reply(request))
    events = take(machine(), reply)
    assert [type(event) for event in events] == [Dropped]
