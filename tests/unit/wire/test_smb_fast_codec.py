"""The SMB struct codec against the scapy layers it mirrors: the session path's reading and
replies (the same fields, WireErrors and reply bytes) and the sender's requests and its reading
of replies ([MS-CIFS] §2.2.3.1, [MS-MSRP] §2.2.3, RFC 1002 §4.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import SMB_Header
from scapy.packet import Raw

from messengerd.core import limits
from messengerd.wire import layers, nbss, smb
from messengerd.wire.errors import WireError
from tests.unit.protocol.test_session_fuzz import mutated, smb_with
from tests.unit.wire.test_smb_wire import PROTOCOL_MD_D0, SAMBA, payload_of

EQUIVALENCE = settings(max_examples=300, deadline=None)

REQUEST_LAYERS = {
    command: layer
    for (command, is_reply), layer in layers.smb.MESSAGE_BODIES.items()
    if not is_reply
}
"""The request layer of each command the session path reads a body of: D0, D5, D7, D6."""
ERRORS = [
    smb.ERROR_INVALID_PARAMETER,
    smb.ERROR_UNKNOWN_SMB,
    smb.ERROR_MESSAGING_OFF,
    smb.ERROR_NO_ROOM,
]
BODY_OFFSET = nbss.NBSS_HEADER_LENGTH + smb.SMB_HEADER_LENGTH
"""Where a request body starts in a SESSION MESSAGE frame."""


def read_with_scapy(frame: bytes) -> tuple[SMB_Header, smb.SMBHeader, smb.MessageRequest | None]:
    """A SESSION MESSAGE as the session path read it with scapy: smb_of, body layer, check()."""
    header = layers.smb.smb_of(layers.nbss.parse_frame(frame))
    fields = smb.SMBHeader(
        header.Command,
        header.Status,
        int(header.Flags),
        int(header.Flags2),
        header.PIDHigh,
        header.TID,
        header.PIDLow,
        header.UID,
        header.MID,
    )
    layer = REQUEST_LAYERS.get(header.Command)
    if layers.smb.is_reply(header) or layer is None:
        return header, fields, None
    body = header.payload
    if not isinstance(body, layer):
        raise WireError(f"{smb.command_name(header.Command)} body does not dissect")
    body.check()
    return (
        header,
        fields,
        smb.MessageRequest(
            OriginatorName=body.fields.get("OriginatorName", b""),
            DestinationName=body.fields.get("DestinationName", b""),
            MessageGroupId=body.fields.get("MessageGroupId", 0),
            Data=bytes(body.fields.get("Data", b"")),
        ),
    )


def read_fast(frame: bytes) -> tuple[smb.SMBHeader, smb.MessageRequest | None]:
    """The same frame through the struct codec, as messengerd.protocol.session reads it."""
    header = smb.parse_header(frame[nbss.NBSS_HEADER_LENGTH :])
    if header.Flags & smb.SMB_FLAGS_REPLY or header.Command not in REQUEST_LAYERS:
        return header, None
    return header, smb.parse_request(header.Command, frame[BODY_OFFSET:])


def outcome(function, *args):
    """What `function` returns, or the WireError it raises, comparably."""
    try:
        return function(*args)
    except WireError as exc:
        return ("WireError", str(exc))


def assert_same_replies(request: SMB_Header, header: smb.SMBHeader, group: int) -> None:
    """Every reply the struct builders make for `header` is the scapy build's, byte for byte."""
    for error in ERRORS:
        expected = raw(NBTSession() / layers.smb.error_reply(request, error))
        assert nbss.session_message(smb.build_error_reply(header, error)) == expected
    for message_group_id in (None, group):
        try:
            expected = raw(NBTSession() / layers.smb.success_reply(request, message_group_id))
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc)):
                smb.build_success_reply(header, message_group_id)
        else:
            built = smb.build_success_reply(header, message_group_id)
            assert nbss.session_message(built) == expected


def assert_same_reading(frame: bytes, group: int = 0) -> None:
    """The struct codec reads `frame` as the scapy path did, and answers it with the same bytes."""
    reference = outcome(read_with_scapy, frame)
    fast = outcome(read_fast, frame)
    if fast[0] == "WireError":
        assert fast == reference
        return
    assert fast == reference[1:]
    assert_same_replies(reference[0], fast[0], group)


def session_frames(stream: bytes) -> list[bytes]:
    """The whole frames at the start of `stream`, cut as SessionMachine cuts them."""
    frames = []
    while len(stream) >= nbss.NBSS_HEADER_LENGTH:
        try:
            _, length = nbss.frame_header(stream)
        except WireError:
            break
        end = nbss.NBSS_HEADER_LENGTH + length
        if length > limits.MAX_SESSION_FRAME or len(stream) < end:
            break
        frames.append(stream[:end])
        stream = stream[end:]
    return frames


def session_request_with_scapy(frame: bytes) -> tuple:
    """CALLED and CALLING NAME as the session path read them with NBTSessionRequest."""
    request = layers.nbss.parse_frame(frame).getlayer(layers.nbss.NBTSessionRequest)
    if request is None:
        return ("WireError",)
    return request.CALLED_NAME, request.CALLING_NAME


def session_request_fast(frame: bytes) -> tuple:
    try:
        return nbss.parse_session_request(frame)
    except WireError:
        return ("WireError",)


def assert_same_frame_reading(frame: bytes) -> None:
    """A SESSION MESSAGE or SESSION REQUEST reads the same both ways; other types are not read."""
    packet_type, _ = nbss.frame_header(frame)
    if packet_type == nbss.SESSION_REQUEST:
        assert session_request_fast(frame) == session_request_with_scapy(frame)
    elif packet_type == nbss.SESSION_MESSAGE and len(frame) > nbss.NBSS_HEADER_LENGTH:
        assert_same_reading(frame)


# Known frames


def test_protocol_md_d0_example_reads_the_same():
    header, request = read_fast(PROTOCOL_MD_D0)
    assert header.Command == smb.SMB_COM_SEND_MESSAGE
    assert request == smb.MessageRequest(b"ALICE", b"BOB", Data=b"Hi")
    assert_same_reading(PROTOCOL_MD_D0)


@pytest.mark.parametrize("frame", [98, 100, 102, 103, 104, 105, 106, 107])
def test_smbclient_and_smbd_frames_read_the_same(capture, frame):
    """The session request, its response, D5 D7 D6 and smbd's replies (99, 101 are bare ACKs)."""
    payload = payload_of(capture(SAMBA), frame)
    assert session_frames(payload) == [payload]
    assert_same_frame_reading(payload)


@pytest.mark.parametrize(("request_frame", "reply_frame"), [(104, 105), (106, 107)])
def test_struct_success_reply_is_byte_for_byte_smbds(capture, request_frame, reply_frame):
    header, _ = read_fast(payload_of(capture(SAMBA), request_frame))
    reply = nbss.session_message(smb.build_success_reply(header))
    assert reply == payload_of(capture(SAMBA), reply_frame)


def test_smbclients_session_request_reads_the_same(capture):
    frame = payload_of(capture(SAMBA), 98)
    called, _ = nbss.parse_session_request(frame)
    assert called.name == b"RECVR"
    assert session_request_fast(frame) == session_request_with_scapy(frame)


def test_struct_session_frames_are_scapys():
    assert nbss.positive_response() == raw(NBTSession(TYPE=nbss.POSITIVE_SESSION_RESPONSE))
    assert nbss.keepalive() == raw(NBTSession(TYPE=nbss.SESSION_KEEP_ALIVE))
    for code in nbss.NEGATIVE_RESPONSE_ERRORS:
        built = raw(NBTSession() / layers.nbss.NBTNegativeSessionResponse(ERROR_CODE=code))
        assert nbss.negative_response(code) == built


@pytest.mark.parametrize("length", [0, 1, 35, 0xFFFF, 0x10000, nbss.MAX_NBSS_LENGTH])
def test_session_message_framing_is_scapys_up_to_the_17_bit_length(length):
    body = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert nbss.session_message(body) == raw(NBTSession(TYPE=nbss.SESSION_MESSAGE) / Raw(body))


def test_session_message_over_the_17_bit_length_is_refused():
    with pytest.raises(WireError):
        nbss.session_message(bytes(nbss.MAX_NBSS_LENGTH + 1))


def test_short_header_smb2_and_garbage_fail_as_smb_of_does():
    for smb_bytes in (b"", b"\xffSMB\xd0" + bytes(10), b"\xfeSMB" + bytes(60), bytes(40)):
        assert_same_reading(nbss.session_message(smb_bytes))


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no body at all
        b"\x00\x09\x00\x04ALICE",  # OriginatorName without its NUL
        b"\x00\x09\x00\x04ALICE\x00",  # no BufferFormat2
        b"\x00\x09\x00\x04ALICE\x00\x04",  # no DestinationName
        b"\x00\x09\x00\x04ALICE\x00\x04BOB\x00\x01\x05",  # DataLength cut in half
        b"\x00\x09\x00\x04ALICE\x00\x04BOB\x00\x01\x05\x00Hi",  # Data shorter than DataLength
        b"\x02\x09\x00\x04ALICE\x00\x04BOB\x00\x01\x02\x00Hi",  # WordCount 2
        b"\x00\x09\x00\x07ALICE\x00\x09BOB\x00\x03\x02\x00Hi!!",  # odd formats, trailing bytes
    ],
)
def test_d0_edge_bodies_read_the_same(body):
    assert_same_reading(smb_with(smb.SMB_COM_SEND_MESSAGE, body))


# Generated frames


@st.composite
def built_requests(draw: st.DrawFn) -> bytes:
    """A request built with the scapy layers from drawn fields, perhaps cut short or extended."""
    command = draw(st.sampled_from(sorted(REQUEST_LAYERS)))
    names = st.binary(max_size=40).map(lambda name: name.replace(b"\x00", b"N"))
    fields = {
        "WordCount": draw(st.one_of(st.none(), st.integers(0, 255))),
        "OriginatorName": draw(names),
        "DestinationName": draw(names),
        "MessageGroupId": draw(st.integers(0, 0xFFFF)),
        "Data": draw(st.binary(max_size=300)),
        "DataLength": draw(st.one_of(st.none(), st.integers(0, 0xFFFF))),
        "ByteCount": draw(st.one_of(st.none(), st.integers(0, 0xFFFF))),
    }
    layer = REQUEST_LAYERS[command]
    known = {field.name for field in layer.fields_desc}
    body = layer(**{name: v for name, v in fields.items() if name in known and v is not None})
    header = SMB_Header(
        Command=command,
        Status=draw(st.integers(0, 0xFFFFFFFF)),
        Flags=draw(st.integers(0, 0xFF)),
        Flags2=draw(st.integers(0, 0xFFFF)),
        PIDHigh=draw(st.integers(0, 0xFFFF)),
        SecuritySignature=draw(st.binary(min_size=8, max_size=8)),
        Reserved=draw(st.integers(0, 0xFFFF)),
        TID=draw(st.integers(0, 0xFFFF)),
        PIDLow=draw(st.integers(0, 0xFFFF)),
        UID=draw(st.integers(0, 0xFFFF)),
        MID=draw(st.integers(0, 0xFFFF)),
    )
    data = raw(header / body)
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return nbss.session_message(data + draw(st.binary(max_size=8)))


@EQUIVALENCE
@given(built_requests(), st.integers(0, 0xFFFF))
def test_built_requests_read_and_are_answered_the_same(frame, group):
    assert_same_reading(frame, group)


@EQUIVALENCE
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda command, rest: b"\xffSMB" + bytes([command]) + rest,
            st.sampled_from([*REQUEST_LAYERS, smb.SMB_COM_NEGOTIATE, 0x25, 0xD1]),
            st.binary(max_size=120),
        ),
    )
)
def test_random_smb_bytes_read_the_same(smb_bytes):
    assert_same_reading(nbss.session_message(smb_bytes))


@EQUIVALENCE
@given(st.sampled_from(sorted(REQUEST_LAYERS)), st.binary(max_size=120))
def test_random_bodies_read_the_same(command, body):
    assert_same_reading(smb_with(command, body))


@EQUIVALENCE
@given(mutated())
def test_every_frame_of_mutated_sessions_reads_the_same(stream):
    for frame in session_frames(stream):
        assert_same_frame_reading(frame)


@EQUIVALENCE
@given(st.binary(max_size=120))
def test_random_session_request_bodies_read_the_same(body):
    frame = bytes([nbss.SESSION_REQUEST, 0, 0, len(body)]) + body
    assert session_request_fast(frame) == session_request_with_scapy(frame)


# The sender's requests: struct builders against the layers the sender used to build with.


def request_layer(command: int, **fields) -> bytes:
    """A message command request as the layers build it: header all zero but Command."""
    return raw(SMB_Header() / REQUEST_LAYERS[command](**fields))


def test_d0_builder_writes_the_protocol_md_example():
    built = smb.build_send_message_request(b"ALICE", b"BOB", b"Hi")
    assert nbss.session_message(built) == PROTOCOL_MD_D0
    assert built == request_layer(
        smb.SMB_COM_SEND_MESSAGE, OriginatorName=b"ALICE", DestinationName=b"BOB", Data=b"Hi"
    )


@pytest.mark.parametrize("frame", [102, 104, 106])
def test_smbclients_d5_d7_d6_bodies_are_rebuilt_byte_for_byte(capture, frame):
    """smbclient's header carries its own PID and MID; the bodies are ours exactly."""
    payload = payload_of(capture(SAMBA), frame)
    header, request = read_fast(payload)
    assert request is not None
    build = {
        smb.SMB_COM_SEND_START_MB_MESSAGE: lambda: smb.build_send_start_mb_message_request(
            request.OriginatorName, request.DestinationName
        ),
        smb.SMB_COM_SEND_TEXT_MB_MESSAGE: lambda: smb.build_send_text_mb_message_request(
            request.MessageGroupId, request.Data
        ),
        smb.SMB_COM_SEND_END_MB_MESSAGE: lambda: smb.build_send_end_mb_message_request(
            request.MessageGroupId
        ),
    }[header.Command]
    assert build()[smb.SMB_HEADER_LENGTH :] == payload[BODY_OFFSET:]


oem_names = st.binary(max_size=300).map(lambda name: name.replace(b"\x00", b"N"))
"""OEM strings as a sender may give them: any bytes but NUL, longer than any alias."""
block_data = st.binary(max_size=2000)


@EQUIVALENCE
@given(oem_names, oem_names, block_data)
def test_d0_and_d5_builders_are_the_layers(originator, destination, data):
    names = {"OriginatorName": originator, "DestinationName": destination}
    assert smb.build_send_message_request(originator, destination, data) == request_layer(
        smb.SMB_COM_SEND_MESSAGE, **names, Data=data
    )
    assert smb.build_send_start_mb_message_request(originator, destination) == request_layer(
        smb.SMB_COM_SEND_START_MB_MESSAGE, **names
    )


@EQUIVALENCE
@given(st.integers(0, 0xFFFF), block_data)
def test_d7_and_d6_builders_are_the_layers(group, data):
    assert smb.build_send_text_mb_message_request(group, data) == request_layer(
        smb.SMB_COM_SEND_TEXT_MB_MESSAGE, MessageGroupId=group, Data=data
    )
    assert smb.build_send_end_mb_message_request(group) == request_layer(
        smb.SMB_COM_SEND_END_MB_MESSAGE, MessageGroupId=group
    )


@EQUIVALENCE
@given(oem_names, oem_names, block_data, st.integers(0, 0xFFFF))
def test_built_requests_parse_back_to_their_fields(originator, destination, data, group):
    built = [
        smb.build_send_message_request(originator, destination, data),
        smb.build_send_start_mb_message_request(originator, destination),
        smb.build_send_text_mb_message_request(group, data),
        smb.build_send_end_mb_message_request(group),
    ]
    header, request = read_fast(nbss.session_message(built[0]))
    assert request == smb.MessageRequest(originator, destination, Data=data)
    assert read_fast(nbss.session_message(built[1]))[1] == smb.MessageRequest(
        originator, destination
    )
    assert read_fast(nbss.session_message(built[2]))[1] == smb.MessageRequest(
        MessageGroupId=group, Data=data
    )
    assert read_fast(nbss.session_message(built[3]))[1] == smb.MessageRequest(MessageGroupId=group)
    assert header == smb.SMBHeader(smb.SMB_COM_SEND_MESSAGE, 0, 0, 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: smb.build_send_message_request(b"AL\x00ICE", b"BOB", b"Hi"),
        lambda: smb.build_send_start_mb_message_request(b"ALICE", b"B\x00B"),
        lambda: smb.build_send_message_request(b"ALICE", b"BOB", bytes(0x10000)),
        lambda: smb.build_send_message_request(b"A" * 0x8000, b"B" * 0x8000, b""),
        lambda: smb.build_send_text_mb_message_request(0, bytes(0xFFFD)),
        lambda: smb.build_send_text_mb_message_request(0x10000, b"x"),
        lambda: smb.build_send_end_mb_message_request(-1),
    ],
    ids=[
        "NUL in From",
        "NUL in To",
        "DataLength over 16 bits",
        "ByteCount over 16 bits",
        "D7 ByteCount over 16 bits",
        "MessageGroupId over 16 bits",
        "negative MessageGroupId",
    ],
)
def test_request_builders_refuse_what_does_not_fit(build):
    with pytest.raises(WireError):
        build()


# The D5 response's MessageGroupId, as the sender and decode read it.

D5_REPLY_HEADER = raw(
    SMB_Header(Command=smb.SMB_COM_SEND_START_MB_MESSAGE, Flags=smb.SMB_FLAGS_REPLY)
)


def group_with_scapy(body: bytes) -> int | None:
    """The MessageGroupId the SMBSendStartMBMessageResponse layer reads from a D5 reply body."""
    layer = SMB_Header(D5_REPLY_HEADER + body).getlayer(layers.smb.SMBSendStartMBMessageResponse)
    if layer is None or layer.WordCount < 1:
        return None
    return layer.MessageGroupId


def test_smbds_d5_reply_carries_no_group_and_ours_does(capture):
    smbd = payload_of(capture(SAMBA), 103)
    assert smb.parse_send_start_mb_message_response(smbd[BODY_OFFSET:]) is None
    header, _ = read_fast(payload_of(capture(SAMBA), 102))
    ours = smb.build_success_reply(header, 0x1234)
    assert smb.parse_send_start_mb_message_response(ours[smb.SMB_HEADER_LENGTH :]) == 0x1234


@EQUIVALENCE
@given(
    st.one_of(
        st.binary(max_size=8),
        st.builds(
            lambda count, group, rest: bytes([count]) + group.to_bytes(2, "little") + rest,
            st.integers(0, 3),
            st.integers(0, 0xFFFF),
            st.binary(max_size=4),
        ),
    )
)
def test_d5_response_group_reads_as_the_layer_reads_it(body):
    assert smb.parse_send_start_mb_message_response(body) == group_with_scapy(body)


# A reply's Status in words, as the sender and decode show it.


def status_of(reply: bytes) -> str:
    return smb.describe_status(smb.parse_header(reply))


def test_reply_status_in_words():
    request = smb.SMBHeader(smb.SMB_COM_SEND_MESSAGE, 0, 0, 0, 0, 0, 0, 0, 0)
    assert status_of(smb.build_success_reply(request)) == "success"
    assert (
        status_of(smb.build_error_reply(request, smb.ERROR_MESSAGING_OFF))
        == "ERRSRV/ERRmsgoff (not receiving messages)"
    )
    assert (
        status_of(smb.build_error_reply(request, smb.ERROR_NO_ROOM))
        == "ERRSRV/ERRnoroom (no room for the message)"
    )
    nt_request = smb.SMBHeader(
        smb.SMB_COM_SEND_MESSAGE, 0, 0, smb.SMB_FLAGS2_NT_STATUS, 0, 0, 0, 0, 0
    )
    assert (
        status_of(smb.build_error_reply(nt_request, smb.ERROR_INVALID_PARAMETER))
        == "STATUS_INVALID_PARAMETER"
    )


def test_unknown_statuses_are_shown_as_numbers():
    dos = smb.SMBHeader(smb.SMB_COM_SEND_MESSAGE, smb.ERRDOS | (5 << 16), 0x80, 0, 0, 0, 0, 0, 0)
    assert smb.describe_status(dos) == "DOS error 1/5"
    nt = smb.SMBHeader(
        smb.SMB_COM_SEND_MESSAGE, 0xC0000022, 0x80, smb.SMB_FLAGS2_NT_STATUS, 0, 0, 0, 0, 0
    )
    assert smb.describe_status(nt) == "NTSTATUS 0xC0000022"
