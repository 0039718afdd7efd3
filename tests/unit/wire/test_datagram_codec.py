"""The datagram struct codec against the scapy layers it mirrors: build_datagram and
build_mailslot_write write the layers' bytes, and parse_datagram and parse_mailslot_write read
what the layers dissect, with the same WireErrors (RFC 1002 §4.4, [MS-MAIL] §2.2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.smb import SMB_Header, SMBMailslot_Write
from scapy.packet import Raw

from messengerd.core.limits import MAX_DATAGRAM_BYTES
from messengerd.decode.capture import read_segments
from messengerd.wire.datagram import (
    DATA_MSG_TYPES,
    DATAGRAM_ERROR,
    DATAGRAM_ERROR_LENGTH,
    DATAGRAM_HEADER_LENGTH,
    DATAGRAM_QUERY_HEADER_LENGTH,
    ERROR_CODES,
    MAILSLOT_CLASS_UNRELIABLE,
    MAILSLOT_PRIORITY,
    MAILSLOT_SETUP_COUNT,
    MAILSLOT_WRITE,
    MAX_DATAGRAM_WIRE_BYTES,
    MESSENGER_MAILSLOT,
    NETBIOS_DATAGRAM_PORT,
    QUERY_MSG_TYPES,
    SETUP_COUNT_OFFSET,
    SMB_COM_TRANSACTION,
    TRANSACTION_NAME_OFFSET,
    TRANSACTION_WORD_COUNT,
    DatagramError,
    DatagramQuery,
    DirectDatagram,
    MailslotWrite,
    build_datagram,
    build_mailslot_datagrams,
    build_mailslot_write,
    fragment_datagram,
    parse_datagram,
    parse_mailslot_write,
)
from messengerd.wire.errors import WireError
from messengerd.wire.layers.datagram import NBTDatagramError, NBTDatagramQuery, NBTDirectDatagram
from messengerd.wire.names import NetBIOSName
from messengerd.wire.smb import SMB1_PROTOCOL, SMB_HEADER_LENGTH
from tests.conftest import CAPTURES
from tests.unit.wire.strategies import (
    EQUIVALENCE,
    ipv4_addresses,
    mutated,
    netbios_names,
    uint8,
    uint16,
)
from tests.unit.wire.test_datagram_wire import ALICE_TO_BOB_HI, win98_variant

ALICE = NetBIOSName(b"ALICE")
BOB = NetBIOSName(b"BOB")


def outcome(function, *args):
    """What `function` returns, or the WireError it raises, comparably."""
    try:
        return function(*args)
    except WireError as exc:
        return ("WireError", str(exc))


# The layers' readings: the checks parse_datagram and parse_mailslot_write make, on the fields
# the layers dissect.


def read_direct_with_layers(data: bytes) -> DirectDatagram:
    if len(data) < DATAGRAM_HEADER_LENGTH:
        raise WireError(f"datagram header is {len(data)} bytes, not {DATAGRAM_HEADER_LENGTH}")
    packet = NBTDirectDatagram(data, stop_dissection_after=NBTDirectDatagram)
    names_length = packet.names_length()
    available = len(data) - DATAGRAM_HEADER_LENGTH
    if packet.DgmLength < names_length:
        raise WireError(f"DGM_LENGTH {packet.DgmLength} is shorter than the two names")
    if packet.DgmLength > available:
        raise WireError(f"DGM_LENGTH {packet.DgmLength} but only {available} bytes follow")
    start = DATAGRAM_HEADER_LENGTH + names_length
    user_data = data[start : DATAGRAM_HEADER_LENGTH + packet.DgmLength]
    if len(user_data) > MAX_DATAGRAM_BYTES:
        raise WireError(f"{len(user_data)} bytes of user data; at most {MAX_DATAGRAM_BYTES}")
    return DirectDatagram(
        msg_type=packet.MsgType,
        flags=int(packet.Flags),
        datagram_id=packet.DgmID,
        source_ip=packet.SourceIP,
        source_port=packet.SourcePort,
        packet_offset=packet.PacketOffset,
        source_name=packet.SourceName,
        destination_name=packet.DestinationName,
        user_data=user_data,
    )


def read_error_with_layers(data: bytes) -> DatagramError:
    if len(data) != DATAGRAM_ERROR_LENGTH:
        raise WireError(f"error datagram is {len(data)} bytes, not {DATAGRAM_ERROR_LENGTH}")
    packet = NBTDatagramError(data)
    if packet.ErrorCode not in ERROR_CODES:
        raise WireError(f"unknown datagram ERROR_CODE 0x{packet.ErrorCode:02X}")
    common = (packet.MsgType, int(packet.Flags), packet.DgmID, packet.SourceIP, packet.SourcePort)
    return DatagramError(*common, error_code=packet.ErrorCode)


def read_query_with_layers(data: bytes) -> DatagramQuery:
    if len(data) < DATAGRAM_QUERY_HEADER_LENGTH:
        raise WireError(f"query datagram is {len(data)} bytes, shorter than its header")
    packet = NBTDatagramQuery(data)
    trailing = len(data) - DATAGRAM_QUERY_HEADER_LENGTH - len(packet.DestinationName.encode())
    if trailing:
        raise WireError(f"{trailing} bytes after a query datagram's destination name")
    common = (packet.MsgType, int(packet.Flags), packet.DgmID, packet.SourceIP, packet.SourcePort)
    return DatagramQuery(*common, destination_name=packet.DestinationName)


def read_datagram_with_layers(data: bytes):
    if not data:
        raise WireError("empty datagram")
    if len(data) > MAX_DATAGRAM_WIRE_BYTES:
        raise WireError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM_WIRE_BYTES}")
    if data[0] in DATA_MSG_TYPES:
        return read_direct_with_layers(data)
    if data[0] == DATAGRAM_ERROR:
        return read_error_with_layers(data)
    if data[0] in QUERY_MSG_TYPES:
        return read_query_with_layers(data)
    raise WireError(f"unknown datagram MSG_TYPE 0x{data[0]:02X}")


def read_mailslot_write_with_layers(user_data: bytes) -> MailslotWrite:
    """The fields scapy's SMBMailslot_Write dissects, under parse_mailslot_write's checks."""
    if len(user_data) < TRANSACTION_NAME_OFFSET:
        raise WireError(f"mailslot write of {len(user_data)} bytes is truncated")
    if user_data[:4] != SMB1_PROTOCOL:
        raise WireError("user data is not an SMB")
    header = SMB_Header(user_data[:SMB_HEADER_LENGTH])
    if header.Command != SMB_COM_TRANSACTION:
        raise WireError(f"SMB command 0x{header.Command:02X} is not SMB_COM_TRANSACTION")
    word_count = user_data[SMB_HEADER_LENGTH]
    if word_count != TRANSACTION_WORD_COUNT:
        raise WireError(f"WordCount {word_count} is not {TRANSACTION_WORD_COUNT}")
    setup_count = user_data[SETUP_COUNT_OFFSET]
    if setup_count != MAILSLOT_SETUP_COUNT:
        raise WireError(f"SetupCount {setup_count} is not {MAILSLOT_SETUP_COUNT}")
    name_end = user_data.find(b"\x00", TRANSACTION_NAME_OFFSET) + 1
    if not name_end:
        raise WireError("mailslot name has no terminating NUL")
    write = SMBMailslot_Write(user_data[SMB_HEADER_LENGTH:name_end])
    if write.Setup[0] != MAILSLOT_WRITE:
        raise WireError(f"transaction opcode {write.Setup[0]} is not a mailslot write")
    data_offset, data_count = write.DataBufferOffset, write.DataLen
    if data_offset < name_end:
        raise WireError(f"DataOffset {data_offset} points into the words or the mailslot name")
    if data_offset + data_count > len(user_data):
        raise WireError(
            f"DataOffset {data_offset} + DataCount {data_count} runs past {len(user_data)} bytes"
        )
    return MailslotWrite(bytes(write.Name), user_data[data_offset : data_offset + data_count])


def assert_same_reading(data: bytes) -> None:
    """parse_datagram reads `data` as the layers do; a direct datagram's user data, too."""
    parsed = outcome(parse_datagram, data)
    assert parsed == outcome(read_datagram_with_layers, data)
    if isinstance(parsed, DirectDatagram):
        user_data = parsed.user_data
        expected = outcome(read_mailslot_write_with_layers, user_data)
        assert outcome(parse_mailslot_write, user_data) == expected


# The layers' builds.


def datagram_layer(user_data: bytes, **fields) -> bytes:
    return bytes(NBTDirectDatagram(**fields) / Raw(user_data))


def mailslot_write_layer(data: bytes, mailslot_name: bytes, pad: int) -> bytes:
    header = SMB_Header(Command=SMB_COM_TRANSACTION, Flags=0, Flags2=0)
    write = SMBMailslot_Write(
        Timeout=0,
        Setup=[MAILSLOT_WRITE, MAILSLOT_PRIORITY, MAILSLOT_CLASS_UNRELIABLE],
        DataBufferOffset=TRANSACTION_NAME_OFFSET + len(mailslot_name) + 1 + pad,
        ByteCount=len(mailslot_name) + 1 + pad + len(data),
        Name=mailslot_name,
        Data=data,
    )
    return bytes(header / write)


# Known datagrams


def test_protocol_md_datagram_reads_the_same_both_ways():
    for data in (ALICE_TO_BOB_HI, win98_variant(ALICE_TO_BOB_HI)):
        assert_same_reading(data)


def test_hand_built_datagram_is_the_layers_build():
    user_data = parse_datagram(ALICE_TO_BOB_HI).user_data
    assert mailslot_write_layer(b"ALICE\x00BOB\x00Hi\x00", MESSENGER_MAILSLOT, 0) == user_data
    layer = datagram_layer(
        user_data,
        SourceIP="10.0.0.1",
        DgmID=1,
        SourceName=ALICE,
        DestinationName=BOB,
    )
    assert layer == ALICE_TO_BOB_HI


@pytest.mark.parametrize(
    "name", sorted(path.name for path in CAPTURES.glob("*.pcap")) or ["(no captures)"]
)
def test_every_capture_datagram_reads_the_same_both_ways(capture, name):
    """Windows 98's and Samba's browse datagrams, nmbd's, the broadcast message of the netns
    capture: every UDP 138 payload, the malformed ones too."""
    for segment in read_segments(capture(name)):
        if segment.transport == "udp" and NETBIOS_DATAGRAM_PORT in (segment.sport, segment.dport):
            assert_same_reading(segment.payload)


# Generated datagrams

datagram_fields = st.fixed_dictionaries(
    {
        "msg_type": st.sampled_from(sorted(DATA_MSG_TYPES)),
        "flags": uint8,
        "datagram_id": uint16,
        "source_ip": ipv4_addresses,
        "source_port": uint16,
        "packet_offset": uint16,
        "source_name": netbios_names,
        "destination_name": netbios_names,
    }
)


def layer_fields(fields: dict) -> dict:
    """build_datagram's arguments under NBTDirectDatagram's field names."""
    return {
        "MsgType": fields["msg_type"],
        "Flags": fields["flags"],
        "DgmID": fields["datagram_id"],
        "SourceIP": fields["source_ip"],
        "SourcePort": fields["source_port"],
        "PacketOffset": fields["packet_offset"],
        "SourceName": fields["source_name"],
        "DestinationName": fields["destination_name"],
    }


@settings(**EQUIVALENCE)
@given(datagram_fields, st.binary(max_size=600))
def test_build_datagram_is_the_layers(fields, user_data):
    built = build_datagram(user_data, **fields)
    assert built == datagram_layer(user_data, **layer_fields(fields))
    assert_same_reading(built)


mailslot_names = st.one_of(
    st.just(MESSENGER_MAILSLOT), st.binary(max_size=80).filter(lambda name: b"\x00" not in name)
)


@settings(**EQUIVALENCE)
@given(st.binary(max_size=1000), mailslot_names, st.integers(0, 12))
def test_build_mailslot_write_is_the_layers(data, mailslot_name, pad):
    built = build_mailslot_write(data, mailslot_name=mailslot_name, pad=pad)
    assert built == mailslot_write_layer(data, mailslot_name, pad)
    assert parse_mailslot_write(built) == (mailslot_name, data)


@settings(**EQUIVALENCE)
@given(
    netbios_names,
    st.binary(max_size=15).filter(lambda name: b"\x00" not in name),
    st.binary(max_size=2000).filter(lambda text: b"\x00" not in text),
    st.integers(1, 500),
)
def test_messages_and_their_fragments_read_the_same_both_ways(source, recipient, text, size):
    datagrams = build_mailslot_datagrams(
        source.name.replace(b"\x00", b"N") or b"A",
        recipient,
        text,
        source_name=source,
        destination_name=BOB,
        source_ip="192.0.2.9",
        datagram_id=0x4242,
        max_datagram=4096,
    )
    for whole in datagrams:
        assert_same_reading(whole)
        for fragment in fragment_datagram(whole, size):
            assert_same_reading(fragment)


SEEDS = [
    ALICE_TO_BOB_HI,
    win98_variant(ALICE_TO_BOB_HI),
    *build_mailslot_datagrams(
        b"UPS",
        b"BOB",
        b"battery low",
        source_name=NetBIOSName(b"UPS", 0x03, b"corp.example"),
        destination_name=BOB,
        source_ip="192.0.2.9",
        datagram_id=7,
    ),
    bytes.fromhex("13 02 0007 c0a80105 008a 82"),
    bytes.fromhex("14 02 0009 0a000001 008a") + BOB.encode(),
]
"""A Messenger datagram (and Windows 98's), one with a scope, an error and a query."""


@settings(**EQUIVALENCE)
@given(st.one_of(mutated(SEEDS), st.binary(max_size=200)))
def test_mutated_and_random_bytes_read_the_same_both_ways(data):
    assert_same_reading(data)
