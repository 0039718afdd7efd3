"""SMB message commands as scapy layers ([MS-MSRP] §2.2.3) and the replies we build."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import SMB_Header
from scapy.packet import Raw

from messengerd.decode.capture import read_segments
from messengerd.wire import layers, nbss, smb
from messengerd.wire.errors import WireError

PROTOCOL_MD_D0 = (
    bytes.fromhex("00000034")
    + b"\xffSMB\xd0"
    + bytes(27)
    + b"\x00"
    + b"\x11\x00"
    + b"\x04ALICE\x00"
    + b"\x04BOB\x00"
    + b"\x01\x02\x00Hi"
)
"""The D0 example of PROTOCOL.md §4: ALICE to BOB, "Hi"."""

SAMBA = "samba-smbclient-nmbd-netns.pcap"
LOOPBACK = "smbclient-M-loopback.pcap"


def payload_of(path, frame: int) -> bytes:
    """The TCP payload of one numbered frame of a capture."""
    return next(s.payload for s in read_segments(path) if s.frame == frame)


def request_header(**fields) -> SMB_Header:
    """A request header as [MS-MSRP] §2.2.3 wants it: all zero but what the test sets."""
    return SMB_Header(Flags=0, **fields)


def test_protocol_md_d0_example_dissects_and_round_trips():
    packet = NBTSession(PROTOCOL_MD_D0)
    body = packet[layers.smb.SMBSendMessageRequest]
    assert packet[SMB_Header].Command == smb.SMB_COM_SEND_MESSAGE
    assert (body.OriginatorName, body.DestinationName, body.Data) == (b"ALICE", b"BOB", b"Hi")
    assert (body.WordCount, body.ByteCount, body.DataLength) == (0, 0x11, 2)
    assert raw(packet) == PROTOCOL_MD_D0


def test_d0_built_from_fields_is_the_protocol_md_example():
    built = (
        NBTSession()
        / SMB_Header()
        / layers.smb.SMBSendMessageRequest(
            OriginatorName=b"ALICE", DestinationName=b"BOB", Data=b"Hi"
        )
    )
    assert raw(built) == PROTOCOL_MD_D0


@pytest.mark.parametrize(
    ("frame", "body_class"),
    [
        (102, layers.smb.SMBSendStartMBMessageRequest),
        (103, layers.smb.SMBSendStartMBMessageResponse),
        (104, layers.smb.SMBSendTextMBMessageRequest),
        (105, layers.smb.SMBSendTextMBMessageResponse),
        (106, layers.smb.SMBSendEndMBMessageRequest),
        (107, layers.smb.SMBSendEndMBMessageResponse),
        (126, layers.smb.SMBSendStartMBMessageRequest),
        (128, layers.smb.SMBSendTextMBMessageRequest),
        (131, layers.smb.SMBSendEndMBMessageResponse),
    ],
)
def test_smbclient_and_smbd_frames_dissect_and_round_trip(capture, frame, body_class):
    payload = payload_of(capture(SAMBA), frame)
    packet = layers.nbss.parse_frame(payload)
    assert type(packet[SMB_Header].payload) is body_class
    assert raw(packet) == payload


def test_d5_request_built_from_fields_is_smbclients(capture):
    built = request_header(PIDLow=0x5496) / layers.smb.SMBSendStartMBMessageRequest(
        OriginatorName=b"alice", DestinationName=b"RECVR"
    )
    assert nbss.session_message(built) == payload_of(capture(SAMBA), 102)


def test_d7_request_built_from_fields_is_smbclients(capture):
    built = request_header(PIDLow=0x5496) / layers.smb.SMBSendTextMBMessageRequest(
        MessageGroupId=0, Data=b"netns test line1\r\nline2\r\n"
    )
    assert nbss.session_message(built) == payload_of(capture(SAMBA), 104)


def test_d6_request_built_from_fields_is_smbclients(capture):
    built = request_header(PIDLow=0x5496) / layers.smb.SMBSendEndMBMessageRequest(MessageGroupId=0)
    assert nbss.session_message(built) == payload_of(capture(SAMBA), 106)


def test_smbds_d5_reply_has_no_message_group_id(capture):
    reply = layers.nbss.parse_frame(payload_of(capture(SAMBA), 103))[
        layers.smb.SMBSendStartMBMessageResponse
    ]
    assert reply.WordCount == 0
    assert reply.MessageGroupId is None


@pytest.mark.parametrize(("request_frame", "reply_frame"), [(104, 105), (106, 107), (128, 129)])
def test_our_success_reply_is_byte_for_byte_smbds(capture, request_frame, reply_frame):
    request = layers.nbss.parse_frame(payload_of(capture(SAMBA), request_frame))[SMB_Header]
    reply = nbss.session_message(layers.smb.success_reply(request))
    assert reply == payload_of(capture(SAMBA), reply_frame)


def test_our_d5_reply_differs_from_smbds_only_by_the_message_group_id(capture):
    request = layers.nbss.parse_frame(payload_of(capture(SAMBA), 102))[SMB_Header]
    ours = layers.nbss.parse_frame(nbss.session_message(layers.smb.success_reply(request, 7)))
    smbds = layers.nbss.parse_frame(payload_of(capture(SAMBA), 103))
    assert ours[layers.smb.SMBSendStartMBMessageResponse].WordCount == 1
    assert ours[layers.smb.SMBSendStartMBMessageResponse].MessageGroupId == 7
    assert raw(ours[SMB_Header])[: smb.SMB_HEADER_LENGTH] == raw(smbds[SMB_Header])[:32]


def test_d5_reply_needs_a_message_group_id():
    request = request_header() / layers.smb.SMBSendStartMBMessageRequest()
    with pytest.raises(ValueError):
        layers.smb.success_reply(SMB_Header(raw(request)))


def test_success_reply_refuses_a_command_that_is_not_a_message_command():
    with pytest.raises(ValueError):
        layers.smb.success_reply(request_header(Command=smb.SMB_COM_NEGOTIATE))


@pytest.mark.parametrize(("frame", "length"), [(38, 0x7D), (40, 0x7F), (42, 0x38)])
def test_smbclients_127_byte_blocks_dissect(capture, frame, length):
    payload = payload_of(capture(LOOPBACK), frame)
    packet = layers.nbss.parse_frame(payload)
    body = packet[layers.smb.SMBSendTextMBMessageRequest]
    assert body.MessageGroupId == 0x1234
    assert body.DataLength == len(body.Data) == length
    assert raw(packet) == payload


def test_reply_header_echoes_ids_and_the_case_bit_only():
    request = SMB_Header(
        Command=smb.SMB_COM_SEND_MESSAGE,
        Flags=0x18,
        Flags2=0x0001,
        PIDHigh=0x0102,
        TID=0x0304,
        PIDLow=0x0506,
        UID=0x0708,
        MID=0x090A,
    )
    reply = layers.smb.reply_header(request)
    assert int(reply.Flags) == smb.SMB_FLAGS_REPLY | smb.SMB_FLAGS_CASE_INSENSITIVE
    assert int(reply.Flags2) == smb.REPLY_FLAGS2 | smb.SMB_FLAGS2_NT_STATUS
    assert (reply.PIDHigh, reply.TID, reply.PIDLow, reply.UID, reply.MID) == (
        0x0102,
        0x0304,
        0x0506,
        0x0708,
        0x090A,
    )
    assert reply.Status == smb.STATUS_SUCCESS


def test_error_reply_is_dos_form_class_reserved_code():
    request = request_header(Command=0x72)
    reply = raw(layers.smb.error_reply(request, smb.ERROR_UNKNOWN_SMB))
    assert reply[4] == 0x72
    assert reply[5:9] == bytes([smb.ERRSRV, 0, smb.ERRunknownsmb, 0])
    assert int.from_bytes(reply[10:12], "little") == smb.REPLY_FLAGS2  # no NT_STATUS bit
    assert reply[smb.SMB_HEADER_LENGTH :] == b"\x00\x00\x00"  # WordCount 0, ByteCount 0


def test_invalid_parameter_is_ntstatus_when_the_request_asked_for_it():
    request = request_header(Command=smb.SMB_COM_SEND_TEXT_MB_MESSAGE, Flags2=0x4000)
    reply = layers.smb.error_reply(request, smb.ERROR_INVALID_PARAMETER)
    assert reply.Status == smb.STATUS_INVALID_PARAMETER == 0xC000000D
    assert int(reply.Flags2) & smb.SMB_FLAGS2_NT_STATUS


def test_invalid_parameter_is_errdos_87_for_a_dos_client():
    request = request_header(Command=smb.SMB_COM_SEND_TEXT_MB_MESSAGE)
    reply = raw(layers.smb.error_reply(request, smb.ERROR_INVALID_PARAMETER))
    assert reply[5:9] == bytes([smb.ERRDOS, 0, 87, 0])


@pytest.mark.parametrize(
    "error", [smb.ERROR_UNKNOWN_SMB, smb.ERROR_MESSAGING_OFF, smb.ERROR_NO_ROOM]
)
def test_errsrv_errors_stay_dos_form_even_for_an_nt_status_client(error):
    request = request_header(Command=smb.SMB_COM_SEND_MESSAGE, Flags2=0x4000)
    reply = layers.smb.error_reply(request, error)
    assert reply.Status == error.error_class | (error.error_code << 16)
    assert not int(reply.Flags2) & smb.SMB_FLAGS2_NT_STATUS


def test_error_reply_to_d5_has_no_message_group_id():
    request = layers.nbss.parse_frame(
        raw(NBTSession() / request_header() / layers.smb.SMBSendStartMBMessageRequest())
    )
    reply = layers.nbss.parse_frame(
        nbss.session_message(layers.smb.error_reply(request[SMB_Header], smb.ERROR_NO_ROOM))
    )
    assert reply[layers.smb.SMBSendStartMBMessageResponse].WordCount == 0
    assert reply[SMB_Header].Status == smb.ERROR_NO_ROOM.dos_status


def test_string_without_nul_leaves_the_body_undissected():
    frame = raw(NBTSession() / request_header(Command=smb.SMB_COM_SEND_START_MB_MESSAGE)) + b""
    body = b"\x00\x06\x00\x04alice"  # WordCount, ByteCount, 0x04, no NUL
    frame = bytes([0, 0, 0, smb.SMB_HEADER_LENGTH + len(body)]) + frame[4:] + body
    packet = layers.nbss.parse_frame(frame)
    assert isinstance(packet[SMB_Header].payload, Raw)
    assert raw(packet) == frame


def test_data_shorter_than_its_data_length_is_read_as_far_as_it_goes():
    good = raw(request_header() / layers.smb.SMBSendTextMBMessageRequest(Data=b"abcdef"))
    cut = good[:-2]
    body = SMB_Header(cut)[layers.smb.SMBSendTextMBMessageRequest]
    assert body.DataLength == 6
    assert body.Data == b"abcd"


def test_wrong_word_count_fails_the_check():
    body = layers.smb.SMBSendTextMBMessageRequest(WordCount=0)
    with pytest.raises(WireError):
        body.check()
    layers.smb.SMBSendTextMBMessageRequest(Data=b"x").check()


def test_trailing_bytes_after_a_body_are_kept_as_padding():
    frame = PROTOCOL_MD_D0[:3] + bytes([PROTOCOL_MD_D0[3] + 2]) + PROTOCOL_MD_D0[4:] + b"\x00\x00"
    packet = layers.nbss.parse_frame(frame)
    assert packet[layers.smb.SMBSendMessageRequest].Data == b"Hi"
    assert raw(packet) == frame


def test_reply_flag_selects_the_response_body():
    request = layers.nbss.parse_frame(PROTOCOL_MD_D0)[SMB_Header]
    assert not layers.smb.is_reply(request)
    reply = layers.nbss.parse_frame(nbss.session_message(layers.smb.success_reply(request)))
    assert layers.smb.is_reply(reply[SMB_Header])
    assert type(reply[SMB_Header].payload) is layers.smb.SMBSendMessageResponse


def test_smb_of_refuses_a_session_message_without_an_smb1_header():
    with pytest.raises(WireError):
        layers.smb.smb_of(layers.nbss.parse_frame(b"\x00\x00\x00\x04\xfeSMB"))
    with pytest.raises(WireError):
        layers.smb.smb_of(layers.nbss.parse_frame(b"\x00\x00\x00\x06\xffSMB\xd0\x00"))
