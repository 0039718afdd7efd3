"""Datagrams and `\\MAILSLOT\\MESSNGR` writes on the wire (RFC 1002 §4.4, PROTOCOL.md §5)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.netbios import NBTDatagram
from scapy.layers.smb import SMB_Header, SMBMailslot_Write

from messengerd.core.limits import MAX_DATAGRAM_BYTES, MAX_FIELD_BYTES, MAX_TEXT_BYTES
from messengerd.wire.datagram import (
    BROADCAST,
    DATAGRAM_NEGATIVE_QUERY_RESPONSE,
    DATAGRAM_QUERY_REQUEST,
    DIRECT_GROUP,
    DIRECT_UNIQUE,
    FLAG_FIRST,
    FLAG_MORE,
    MESSENGER_DATAGRAM_BYTES,
    MESSENGER_MAILSLOT,
    NODE_TYPE_M,
    WIN98_DATA_PAD,
    DatagramError,
    DatagramQuery,
    DirectDatagram,
    build_datagram,
    build_mailslot_datagrams,
    build_mailslot_write,
    build_messenger_payload,
    fragment_datagram,
    parse_datagram,
    parse_mailslot_write,
    parse_messenger_payload,
)
from messengerd.wire.errors import WireError
from messengerd.wire.layers.datagram import NBTDatagramError
from messengerd.wire.names import NetBIOSName

ALICE = NetBIOSName(b"ALICE")
BOB = NetBIOSName(b"BOB")

# ALICE<03> at 10.0.0.1 sends "Hi" to BOB<03>, laid out by hand from PROTOCOL.md §5.
ALICE_TO_BOB_HI = bytes.fromhex(
    "".join(
        [
            # Datagram header (RFC 1002 §4.4.1), big-endian: direct unique, FIRST, B node,
            # DGM_ID 1, SOURCE_IP 10.0.0.1, SOURCE_PORT 138, DGM_LENGTH 168 (names 68 + user
            # data 100), PACKET_OFFSET 0.
            "10 02 0001 0a000001 008a 00a8 0000",
            # SOURCE_NAME ALICE<03>: label length 0x20, 32 letters, root label.
            "20" + b"EBEMEJEDEFCACACACACACACACACACAAD".hex() + "00",
            # DESTINATION_NAME BOB<03>.
            "20" + b"ECEPECCACACACACACACACACACACACAAD".hex() + "00",
            # SMB header: FF 'SMB', Command 0x25 SMB_COM_TRANSACTION, every other field zero.
            "ff534d42 25" + "00" * 27,
            # WordCount 17, then little-endian words: TotalParameterCount 0, TotalDataCount 13,
            # MaxParameterCount 0, MaxDataCount 0, MaxSetupCount 0, Reserved, Flags 0,
            # Timeout 0, Reserved2, ParameterCount 0, ParameterOffset 0, DataCount 13,
            # DataOffset 87, SetupCount 3, Reserved,
            # Setup = [1 mailslot write, priority 1, class 2 unreliable].
            "11 0000 0d00 0000 0000 00 00 0000 00000000 0000 0000 0000 0d00 5700 03 00",
            "0100 0100 0200",
            # ByteCount 31: the mailslot name with its NUL (18) and the data (13).
            "1f00" + b"\\MAILSLOT\\MESSNGR\x00".hex(),
            # The Messenger payload at offset 87: From\0To\0Text\0.
            b"ALICE\x00BOB\x00Hi\x00".hex(),
        ]
    )
)


def alice_to_bob(text: bytes = b"Hi", **options: object) -> list[bytes]:
    options = {"source_name": ALICE, "destination_name": BOB, "source_ip": "10.0.0.1"} | options
    options.setdefault("datagram_id", 1)
    return build_mailslot_datagrams(b"ALICE", b"BOB", text, **options)  # type: ignore[arg-type]


def parse_user_data(raw: bytes) -> bytes:
    datagram = parse_datagram(raw)
    assert isinstance(datagram, DirectDatagram)
    return datagram.user_data


# Where the fields win98_variant edits sit in ALICE_TO_BOB_HI.
DGM_LENGTH_AT = 10
USER_DATA_AT = 14 + 68
DATA_OFFSET_AT = USER_DATA_AT + 57
BYTE_COUNT_AT = USER_DATA_AT + 67
DATA_AT = USER_DATA_AT + 87


def win98_variant(datagram: bytes) -> bytes:
    """`datagram` as Windows 98 sent it: one pad byte before the data, DataOffset 88."""
    padded = bytearray(datagram)
    struct.pack_into(
        "!H", padded, DGM_LENGTH_AT, struct.unpack_from("!H", padded, DGM_LENGTH_AT)[0] + 1
    )
    struct.pack_into("<H", padded, DATA_OFFSET_AT, 88)
    byte_count = struct.unpack_from("<H", padded, BYTE_COUNT_AT)[0]
    struct.pack_into("<H", padded, BYTE_COUNT_AT, byte_count + 1)
    return bytes(padded[:DATA_AT]) + b"\x00" + bytes(padded[DATA_AT:])


def test_hand_built_messngr_datagram_parses() -> None:
    datagram = parse_datagram(ALICE_TO_BOB_HI)

    assert isinstance(datagram, DirectDatagram)
    assert datagram.msg_type == DIRECT_UNIQUE
    assert (datagram.first, datagram.more, datagram.is_fragment) == (True, False, False)
    assert (datagram.datagram_id, datagram.source_ip, datagram.source_port) == (1, "10.0.0.1", 138)
    assert (datagram.source_name, datagram.destination_name) == (ALICE, BOB)
    write = parse_mailslot_write(datagram.user_data)
    assert write == (MESSENGER_MAILSLOT, b"ALICE\x00BOB\x00Hi\x00")
    assert parse_messenger_payload(write.data) == (b"ALICE", b"BOB", b"Hi")


def test_builder_writes_the_hand_built_datagram() -> None:
    assert alice_to_bob() == [ALICE_TO_BOB_HI]


def test_scapy_nbtdatagram_reads_what_we_build() -> None:
    packet = NBTDatagram(ALICE_TO_BOB_HI)

    assert (packet.SourceName, packet.DestinationName) == (b"ALICE", b"BOB")
    assert packet.Length == 168
    write = packet[SMBMailslot_Write]
    assert (write.Name, write.DataBufferOffset, write.Setup) == (MESSENGER_MAILSLOT, 87, [1, 1, 2])
    assert bytes(write.Data) == b"ALICE\x00BOB\x00Hi\x00"


def test_win98_data_offset_88_parses() -> None:
    padded = win98_variant(ALICE_TO_BOB_HI)

    datagram = parse_datagram(padded)
    assert isinstance(datagram, DirectDatagram)
    write = parse_mailslot_write(datagram.user_data)
    assert write.data == b"ALICE\x00BOB\x00Hi\x00"
    assert padded == build_datagram(
        build_mailslot_write(write.data, pad=WIN98_DATA_PAD),
        source_name=ALICE,
        destination_name=BOB,
        source_ip="10.0.0.1",
        datagram_id=1,
    )


def test_data_is_found_by_data_offset_not_by_position() -> None:
    write = build_mailslot_write(b"A\x00B\x00far", pad=9)

    assert struct.unpack_from("<H", write, 57)[0] == 87 + 9
    assert parse_mailslot_write(write).data == b"A\x00B\x00far"


@pytest.mark.parametrize("msg_type", [DIRECT_UNIQUE, DIRECT_GROUP, BROADCAST])
def test_every_data_message_type_round_trips(msg_type: int) -> None:
    (raw,) = alice_to_bob(b"text", msg_type=msg_type, datagram_id=0xBEEF)

    datagram = parse_datagram(raw)
    assert isinstance(datagram, DirectDatagram)
    assert (datagram.msg_type, datagram.datagram_id) == (msg_type, 0xBEEF)


names = st.builds(
    NetBIOSName,
    st.binary(max_size=15).filter(lambda raw: not raw.endswith(b" ")),
    st.integers(0, 255),
    st.sampled_from([b"", b"corp", b"corp.example.com"]),
)
fields = st.binary(max_size=40).filter(lambda raw: b"\x00" not in raw)


@settings(max_examples=200, deadline=None)
@given(
    source=names,
    destination=names,
    sender=fields,
    recipient=fields,
    text=st.binary(max_size=300).filter(lambda raw: b"\x00" not in raw),
    datagram_id=st.integers(0, 0xFFFF),
    msg_type=st.sampled_from([DIRECT_UNIQUE, DIRECT_GROUP, BROADCAST]),
)
def test_built_datagrams_parse_back_to_what_was_built(
    source: NetBIOSName,
    destination: NetBIOSName,
    sender: bytes,
    recipient: bytes,
    text: bytes,
    datagram_id: int,
    msg_type: int,
) -> None:
    (raw,) = build_mailslot_datagrams(
        sender,
        recipient,
        text,
        source_name=source,
        destination_name=destination,
        source_ip="192.168.1.20",
        datagram_id=datagram_id,
        msg_type=msg_type,
        max_datagram=4096,
    )

    datagram = parse_datagram(raw)
    assert isinstance(datagram, DirectDatagram)
    assert (datagram.source_name, datagram.destination_name) == (source, destination)
    assert (datagram.msg_type, datagram.datagram_id) == (msg_type, datagram_id)
    write = parse_mailslot_write(datagram.user_data)
    assert parse_messenger_payload(write.data) == (sender, recipient, text)


def test_scoped_names_are_read_where_scapy_nbtdatagram_misreads_them() -> None:
    scoped = NetBIOSName(b"ALICE", 0x03, b"corp.example")
    (raw,) = alice_to_bob(source_name=scoped)

    datagram = parse_datagram(raw)
    assert isinstance(datagram, DirectDatagram)
    assert (datagram.source_name, datagram.destination_name) == (scoped, BOB)
    assert NBTDatagram(raw).DestinationName != b"BOB"


def test_error_datagram_parses() -> None:
    # 0x13 error, FIRST, DGM_ID 7, SOURCE_IP 192.168.1.5, SOURCE_PORT 138, ERROR_CODE 0x82.
    raw = bytes.fromhex("13 02 0007 c0a80105 008a 82")

    error = parse_datagram(raw)
    assert error == DatagramError(0x13, FLAG_FIRST, 7, "192.168.1.5", 138, 0x82)
    assert bytes(NBTDatagramError(DgmID=7, SourceIP="192.168.1.5", ErrorCode=0x82)) == raw


@pytest.mark.parametrize(
    "raw",
    [
        bytes.fromhex("13 02 0007 c0a80105 008a"),
        bytes.fromhex("13 02 0007 c0a80105 008a 82 00"),
        bytes.fromhex("13 02 0007 c0a80105 008a 85"),
    ],
    ids=["truncated", "trailing byte", "unknown code"],
)
def test_malformed_error_datagram_is_rejected(raw: bytes) -> None:
    with pytest.raises(WireError):
        parse_datagram(raw)


@pytest.mark.parametrize(
    "msg_type", [DATAGRAM_QUERY_REQUEST, 0x15, DATAGRAM_NEGATIVE_QUERY_RESPONSE]
)
def test_query_datagrams_parse(msg_type: int) -> None:
    raw = bytes([msg_type]) + bytes.fromhex("02 0009 0a000001 008a") + BOB.encode()

    assert parse_datagram(raw) == DatagramQuery(msg_type, FLAG_FIRST, 9, "10.0.0.1", 138, BOB)
    with pytest.raises(WireError):
        parse_datagram(raw + b"\x00")


def test_dgm_length_past_the_bytes_is_truncation() -> None:
    with pytest.raises(WireError, match="DGM_LENGTH"):
        parse_datagram(ALICE_TO_BOB_HI[:-1])


def test_dgm_length_shorter_than_the_names_is_rejected() -> None:
    short = bytearray(ALICE_TO_BOB_HI)
    struct.pack_into("!H", short, 10, 67)
    with pytest.raises(WireError, match="DGM_LENGTH"):
        parse_datagram(bytes(short))


def test_bytes_after_dgm_length_are_not_user_data() -> None:
    datagram = parse_datagram(ALICE_TO_BOB_HI + b"junk")

    assert isinstance(datagram, DirectDatagram)
    assert datagram.user_data.endswith(b"Hi\x00")


def test_user_data_over_the_limit_is_rejected() -> None:
    (raw,) = alice_to_bob(b"x" * MAX_DATAGRAM_BYTES, max_datagram=0xFFFF)
    with pytest.raises(WireError):
        parse_datagram(raw)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x10", bytes([0x17]) + ALICE_TO_BOB_HI[1:], ALICE_TO_BOB_HI[:13], ALICE_TO_BOB_HI[:40]],
    ids=["empty", "one byte", "unknown type", "short header", "cut name"],
)
def test_malformed_datagram_is_rejected(raw: bytes) -> None:
    with pytest.raises(WireError):
        parse_datagram(raw)


USER_DATA = ALICE_TO_BOB_HI[USER_DATA_AT:]


def with_byte(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


@pytest.mark.parametrize(
    "user_data",
    [
        USER_DATA[:68],
        b"\xfeSMB" + USER_DATA[4:],
        with_byte(USER_DATA, 4, 0x32),
        with_byte(USER_DATA, 32, 16),
        with_byte(USER_DATA, 59, 2),
        with_byte(USER_DATA, 61, 2),
        USER_DATA[:69] + b"\\MAILSLOT\\MESSNGR",
        with_byte(USER_DATA, 57, 200),
        with_byte(USER_DATA, 57, 80),
        with_byte(USER_DATA, 55, 14),
    ],
    ids=[
        "truncated words",
        "SMB2 magic",
        "TRANSACTION2",
        "WordCount 16",
        "SetupCount 2",
        "opcode 2",
        "unterminated name",
        "DataOffset past the end",
        "DataOffset into the name",
        "DataCount past the end",
    ],
)
def test_malformed_mailslot_write_is_rejected(user_data: bytes) -> None:
    with pytest.raises(WireError):
        parse_mailslot_write(user_data)


def test_messenger_payload_final_nul_is_optional() -> None:
    assert parse_messenger_payload(b"ALICE\x00BOB\x00Hi") == (b"ALICE", b"BOB", b"Hi")
    assert parse_messenger_payload(b"ALICE\x00BOB\x00") == (b"ALICE", b"BOB", b"")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"ALICE",
        b"ALICE\x00BOB",
        b"A" * (MAX_FIELD_BYTES + 1) + b"\x00BOB\x00Hi",
        b"ALICE\x00" + b"B" * (MAX_FIELD_BYTES + 1) + b"\x00Hi",
        b"ALICE\x00BOB\x00" + b"x" * (MAX_TEXT_BYTES + 1),
    ],
    ids=["empty", "no NUL", "no To NUL", "long From", "long To", "long text"],
)
def test_malformed_messenger_payload_is_rejected(payload: bytes) -> None:
    with pytest.raises(WireError):
        parse_messenger_payload(payload)


def test_text_at_the_limit_is_accepted() -> None:
    text = b"x" * MAX_TEXT_BYTES
    assert parse_messenger_payload(b"A\x00B\x00" + text + b"\x00").text == text


def test_long_text_is_split_into_whole_messages_near_424_bytes() -> None:
    text = bytes(range(1, 256)) * 4

    datagrams = alice_to_bob(text, datagram_id=0xFFFE)

    assert len(datagrams) > 1
    assert all(len(raw) <= MESSENGER_DATAGRAM_BYTES for raw in datagrams)
    assert len(datagrams[0]) == MESSENGER_DATAGRAM_BYTES
    parsed = [parse_datagram(raw) for raw in datagrams]
    assert [d.datagram_id for d in parsed] == [0xFFFE, 0xFFFF, 0, 1, 2][: len(datagrams)]
    payloads = [
        parse_messenger_payload(parse_mailslot_write(d.user_data).data)
        for d in parsed
        if isinstance(d, DirectDatagram)
    ]
    assert {(p.sender, p.recipient) for p in payloads} == {(b"ALICE", b"BOB")}
    assert b"".join(p.text for p in payloads) == text


def test_split_never_parts_cr_from_lf() -> None:
    (first, *_) = alice_to_bob(b"x" * 500)
    room = len(parse_messenger_payload(parse_mailslot_write(parse_user_data(first)).data).text)
    text = b"x" * (room - 1) + b"\r\n" + b"y" * 10

    texts = [
        parse_messenger_payload(parse_mailslot_write(parse_user_data(raw)).data).text
        for raw in alice_to_bob(text)
    ]

    assert texts == [b"x" * (room - 1), b"\r\n" + b"y" * 10]


def test_no_room_for_text_is_an_error() -> None:
    with pytest.raises(WireError):
        alice_to_bob(b"text", max_datagram=100)


def test_fragments_carry_first_more_and_offsets() -> None:
    (whole,) = alice_to_bob(b"z" * 1000, max_datagram=4096)
    original = parse_datagram(whole)
    assert isinstance(original, DirectDatagram)

    fragments = [parse_datagram(raw) for raw in fragment_datagram(whole, 400)]

    assert [(f.flags, f.packet_offset) for f in fragments if isinstance(f, DirectDatagram)] == [
        (FLAG_FIRST | FLAG_MORE, 0),
        (FLAG_MORE, 400),
        (0, 800),
    ]
    assert b"".join(f.user_data for f in fragments if isinstance(f, DirectDatagram)) == (
        original.user_data
    )


def test_fragments_keep_the_node_type() -> None:
    (whole,) = alice_to_bob(b"z" * 100)
    whole = build_datagram(
        parse_user_data(whole),
        source_name=ALICE,
        destination_name=BOB,
        source_ip="10.0.0.1",
        datagram_id=1,
        flags=FLAG_FIRST | NODE_TYPE_M,
    )
    flags = [parse_datagram(raw).flags for raw in fragment_datagram(whole, 60)]
    assert all(flag & NODE_TYPE_M for flag in flags)


def test_builder_refuses_a_host_name_for_source_ip() -> None:
    with pytest.raises(WireError):
        alice_to_bob(source_ip="localhost")


def test_builder_refuses_nul_inside_a_field() -> None:
    with pytest.raises(WireError):
        build_messenger_payload(b"AL\x00ICE", b"BOB", b"Hi")


def test_scapy_smb_layers_build_our_mailslot_write() -> None:
    write = SMB_Header(build_mailslot_write(b"payload"))

    assert write.Command == 0x25
    assert write[SMBMailslot_Write].Name == MESSENGER_MAILSLOT
