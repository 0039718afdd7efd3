"""NetBIOS datagrams on UDP 138 (RFC 1002 §4.4) and the `\\MAILSLOT\\MESSNGR` writes they carry,
read and built with struct.

Three layers, outside in (PROTOCOL.md §5):
- the datagram service header and its two NetBIOS names (RFC 1002 §4.4.1-4.4.5);
- an SMB_COM_TRANSACTION mailslot write ([MS-MAIL] §2.2.1, [MS-CIFS] §2.2.4.33.1);
- the Messenger payload `From\\0To\\0Text`.

The scapy layers in messengerd.wire.layers.datagram (and scapy's own SMBMailslot_Write) are
the reference definition: tests hold these functions to the same fields and bytes
(tests/unit/wire/test_datagram_codec.py).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from messengerd.core.limits import MAX_DATAGRAM_BYTES, MAX_FIELD_BYTES, MAX_TEXT_BYTES
from messengerd.wire.errors import WireError
from messengerd.wire.names import MAX_ENCODED_NAME_LENGTH, NetBIOSName, decode_first_level
from messengerd.wire.smb import SMB1_PROTOCOL, SMB_HEADER_LENGTH, build_request_header

NETBIOS_DATAGRAM_PORT = 138
"""UDP port of the NetBIOS datagram service (RFC 1002 §4.4)."""

# MSG_TYPE values (RFC 1002 §4.4.1).
DIRECT_UNIQUE = 0x10
DIRECT_GROUP = 0x11
BROADCAST = 0x12
DATAGRAM_ERROR = 0x13
DATAGRAM_QUERY_REQUEST = 0x14
DATAGRAM_POSITIVE_QUERY_RESPONSE = 0x15
DATAGRAM_NEGATIVE_QUERY_RESPONSE = 0x16

MSG_TYPES = {
    DIRECT_UNIQUE: "direct_unique",
    DIRECT_GROUP: "direct_group",
    BROADCAST: "broadcast",
    DATAGRAM_ERROR: "error",
    DATAGRAM_QUERY_REQUEST: "query_request",
    DATAGRAM_POSITIVE_QUERY_RESPONSE: "positive_query_response",
    DATAGRAM_NEGATIVE_QUERY_RESPONSE: "negative_query_response",
}
DATA_MSG_TYPES = frozenset({DIRECT_UNIQUE, DIRECT_GROUP, BROADCAST})
"""The message types that carry user data and may be fragmented (RFC 1002 §4.4.2)."""
QUERY_MSG_TYPES = frozenset(
    {DATAGRAM_QUERY_REQUEST, DATAGRAM_POSITIVE_QUERY_RESPONSE, DATAGRAM_NEGATIVE_QUERY_RESPONSE}
)

# FLAGS bits: | 0 | 0 | 0 | 0 | SNT | F | M | (RFC 1002 §4.4.1).
FLAG_MORE = 0x01
FLAG_FIRST = 0x02
NODE_TYPE_MASK = 0x0C
NODE_TYPE_B = 0x00
NODE_TYPE_P = 0x04
NODE_TYPE_M = 0x08
NODE_TYPE_NBDD = 0x0C
"""SNT 11: sent by a datagram distribution server; Microsoft's H nodes use it too."""

# ERROR_CODE values of an error datagram (RFC 1002 §4.4.3).
DESTINATION_NAME_NOT_PRESENT = 0x82
INVALID_SOURCE_NAME_FORMAT = 0x83
INVALID_DESTINATION_NAME_FORMAT = 0x84
ERROR_CODES = {
    DESTINATION_NAME_NOT_PRESENT: "destination name not present",
    INVALID_SOURCE_NAME_FORMAT: "invalid source name format",
    INVALID_DESTINATION_NAME_FORMAT: "invalid destination name format",
}

DATAGRAM_HEADER_LENGTH = 14
"""MSG_TYPE through PACKET_OFFSET; DGM_LENGTH counts the bytes after it (RFC 1002 §4.4.1)."""
DATAGRAM_ERROR_LENGTH = 11
"""The whole error datagram: the common 10 bytes and ERROR_CODE (RFC 1002 §4.4.3)."""
DATAGRAM_QUERY_HEADER_LENGTH = 10
"""Bytes before a query datagram's DESTINATION_NAME (RFC 1002 §4.4.4)."""
MAX_DGM_LENGTH = 0xFFFF
"""DGM_LENGTH and PACKET_OFFSET are 16-bit fields (RFC 1002 §4.4.2)."""
MAX_DATAGRAM_WIRE_BYTES = DATAGRAM_HEADER_LENGTH + 2 * MAX_ENCODED_NAME_LENGTH + MAX_DATAGRAM_BYTES
"""Longest datagram worth dissecting: two names at their longest and our user-data bound."""

# SMB_COM_TRANSACTION as a mailslot write ([MS-CIFS] §2.2.4.33.1, [MS-MAIL] §2.2.1).
SMB_COMMAND_OFFSET = 4
"""Command follows the 4-byte Protocol field ([MS-CIFS] §2.2.3.1)."""
SMB_COM_TRANSACTION = 0x25
MAILSLOT_SETUP_COUNT = 3
"""A mailslot write has three setup words: opcode, priority, class ([MS-MAIL] §2.2.1)."""
TRANSACTION_WORD_COUNT = 14 + MAILSLOT_SETUP_COUNT
"""WordCount of SMB_COM_TRANSACTION is 14 plus SetupCount: 17 for a mailslot write."""
SETUP_COUNT_OFFSET = SMB_HEADER_LENGTH + 1 + 2 * 13
"""SetupCount follows WordCount and the 13 fixed words of the request ([MS-CIFS] §2.2.4.33.1)."""
TRANSACTION_NAME_OFFSET = SMB_HEADER_LENGTH + 1 + 2 * TRANSACTION_WORD_COUNT + 2
"""Where the transaction (mailslot) name starts: after WordCount, the words and ByteCount."""
MAILSLOT_WRITE = 1
"""Setup[0]: the mailslot write opcode ([MS-MAIL] §2.2.1)."""
MAILSLOT_PRIORITY = 1
"""Setup[1]: what Windows 98 and Samba put there in the captures (browse announcements)."""
MAILSLOT_CLASS_UNRELIABLE = 2
"""Setup[2]: second-class, unreliable and broadcast delivery ([MS-MAIL] §2.2.1)."""
WIN98_DATA_PAD = 1
"""Windows 98 puts one byte between the mailslot name and the data (PROTOCOL.md §5)."""

MESSENGER_MAILSLOT = b"\\MAILSLOT\\MESSNGR"
"""The mailslot the Messenger service reads (PROTOCOL.md §5)."""
MESSENGER_DATAGRAM_BYTES = 424
"""Senders keep a Messenger datagram near 424 bytes and split longer text over several
datagrams, each a whole message (PROTOCOL.md §5)."""

_COMMON = struct.Struct("!BBH4sH")
"""MSG_TYPE, FLAGS, DGM_ID, SOURCE_IP, SOURCE_PORT: how every datagram opens (RFC 1002 §4.4)."""
_LENGTHS = struct.Struct("!HH")
"""DGM_LENGTH and PACKET_OFFSET after the common fields of a direct datagram (RFC 1002 §4.4.2)."""
_TRANSACTION_WORDS = struct.Struct("<BHHHHBBHIHHHHHBB3HH")
"""SMB_COM_TRANSACTION after the header: WordCount, TotalParameterCount, TotalDataCount,
MaxParameterCount, MaxDataCount, MaxSetupCount, Reserved1, Flags, Timeout, Reserved2,
ParameterCount, ParameterOffset, DataCount, DataOffset, SetupCount, Reserved3, the three
Setup words and ByteCount ([MS-CIFS] §2.2.4.33.1)."""


@dataclass(frozen=True)
class DirectDatagram:
    """A direct unique, direct group or broadcast datagram or fragment (RFC 1002 §4.4.2)."""

    msg_type: int
    flags: int
    datagram_id: int
    source_ip: str
    source_port: int
    packet_offset: int
    source_name: NetBIOSName
    destination_name: NetBIOSName
    user_data: bytes

    @property
    def first(self) -> bool:
        """The F flag: the first fragment, or a datagram sent whole."""
        return bool(self.flags & FLAG_FIRST)

    @property
    def more(self) -> bool:
        """The M flag: more fragments follow."""
        return bool(self.flags & FLAG_MORE)

    @property
    def node_type(self) -> int:
        """SNT, the sending node's type: one of the NODE_TYPE_* values."""
        return self.flags & NODE_TYPE_MASK

    @property
    def is_fragment(self) -> bool:
        """True unless this datagram holds all its user data (offset 0, no MORE).

        The F flag is not required for that: a lone datagram with it clear is still whole.
        """
        return self.more or self.packet_offset != 0


@dataclass(frozen=True)
class DatagramError:
    """An error datagram: a node could not deliver a datagram (RFC 1002 §4.4.3)."""

    msg_type: int
    flags: int
    datagram_id: int
    source_ip: str
    source_port: int
    error_code: int


@dataclass(frozen=True)
class DatagramQuery:
    """A datagram distribution server query or its answer (RFC 1002 §4.4.4-4.4.5)."""

    msg_type: int
    flags: int
    datagram_id: int
    source_ip: str
    source_port: int
    destination_name: NetBIOSName


Datagram = DirectDatagram | DatagramError | DatagramQuery


class MailslotWrite(NamedTuple):
    """The mailslot a transaction writes to and the bytes it writes ([MS-MAIL] §2.2.1)."""

    mailslot_name: bytes
    data: bytes


class MessengerPayload(NamedTuple):
    """The three OEM fields of a Messenger mailslot message (PROTOCOL.md §5)."""

    sender: bytes
    recipient: bytes
    text: bytes


def parse_datagram(data: bytes) -> Datagram:
    """The datagram in one UDP 138 payload (RFC 1002 §4.4); WireError when it is malformed."""
    if not data:
        raise WireError("empty datagram")
    if len(data) > MAX_DATAGRAM_WIRE_BYTES:
        raise WireError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM_WIRE_BYTES}")
    msg_type = data[0]
    if msg_type in DATA_MSG_TYPES:
        return _parse_direct(data)
    if msg_type == DATAGRAM_ERROR:
        return _parse_error(data)
    if msg_type in QUERY_MSG_TYPES:
        return _parse_query(data)
    raise WireError(f"unknown datagram MSG_TYPE 0x{msg_type:02X}")


def _common_fields(data: bytes) -> tuple[int, int, int, str, int]:
    """MSG_TYPE, FLAGS, DGM_ID, SOURCE_IP (dotted) and SOURCE_PORT (RFC 1002 §4.4.1)."""
    msg_type, flags, datagram_id, source_ip, source_port = _COMMON.unpack_from(data, 0)
    return msg_type, flags, datagram_id, str(ipaddress.IPv4Address(source_ip)), source_port


def _parse_direct(data: bytes) -> DirectDatagram:
    """Header, names and user data of a 0x10-0x12 datagram, DGM_LENGTH checked (§4.4.2)."""
    if len(data) < DATAGRAM_HEADER_LENGTH:
        raise WireError(f"datagram header is {len(data)} bytes, not {DATAGRAM_HEADER_LENGTH}")
    msg_type, flags, datagram_id, source_ip, source_port = _common_fields(data)
    dgm_length, packet_offset = _LENGTHS.unpack_from(data, _COMMON.size)
    source_name, end = decode_first_level(data, DATAGRAM_HEADER_LENGTH)
    destination_name, end = decode_first_level(data, end)
    names_length = end - DATAGRAM_HEADER_LENGTH
    available = len(data) - DATAGRAM_HEADER_LENGTH
    if dgm_length < names_length:
        raise WireError(f"DGM_LENGTH {dgm_length} is shorter than the two names")
    if dgm_length > available:
        raise WireError(f"DGM_LENGTH {dgm_length} but only {available} bytes follow")
    user_data = data[end : DATAGRAM_HEADER_LENGTH + dgm_length]
    if len(user_data) > MAX_DATAGRAM_BYTES:
        raise WireError(f"{len(user_data)} bytes of user data; at most {MAX_DATAGRAM_BYTES}")
    return DirectDatagram(
        msg_type=msg_type,
        flags=flags,
        datagram_id=datagram_id,
        source_ip=source_ip,
        source_port=source_port,
        packet_offset=packet_offset,
        source_name=source_name,
        destination_name=destination_name,
        user_data=user_data,
    )


def _parse_error(data: bytes) -> DatagramError:
    """An error datagram, exactly 11 bytes, with a known ERROR_CODE (RFC 1002 §4.4.3)."""
    if len(data) != DATAGRAM_ERROR_LENGTH:
        raise WireError(f"error datagram is {len(data)} bytes, not {DATAGRAM_ERROR_LENGTH}")
    error_code = data[_COMMON.size]
    if error_code not in ERROR_CODES:
        raise WireError(f"unknown datagram ERROR_CODE 0x{error_code:02X}")
    return DatagramError(*_common_fields(data), error_code=error_code)


def _parse_query(data: bytes) -> DatagramQuery:
    """A query datagram: header and one name, nothing after it (RFC 1002 §4.4.4-4.4.5)."""
    if len(data) < DATAGRAM_QUERY_HEADER_LENGTH:
        raise WireError(f"query datagram is {len(data)} bytes, shorter than its header")
    destination_name, end = decode_first_level(data, DATAGRAM_QUERY_HEADER_LENGTH)
    trailing = len(data) - end
    if trailing:
        raise WireError(f"{trailing} bytes after a query datagram's destination name")
    return DatagramQuery(*_common_fields(data), destination_name=destination_name)


def parse_mailslot_write(user_data: bytes) -> MailslotWrite:
    """The mailslot name and data of an SMB_COM_TRANSACTION mailslot write ([MS-MAIL] §2.2.1).

    The data is found through DataOffset and DataCount, never by position: Windows 98 pads one
    byte after the name. ByteCount is not used, as in Samba's nmbd, since nothing is located by
    it. Raises WireError for anything else or any field pointing outside `user_data`.
    """
    if len(user_data) < TRANSACTION_NAME_OFFSET:
        raise WireError(f"mailslot write of {len(user_data)} bytes is truncated")
    if user_data[:4] != SMB1_PROTOCOL:
        raise WireError("user data is not an SMB")
    command = user_data[SMB_COMMAND_OFFSET]
    if command != SMB_COM_TRANSACTION:
        raise WireError(f"SMB command 0x{command:02X} is not SMB_COM_TRANSACTION")
    word_count = user_data[SMB_HEADER_LENGTH]
    if word_count != TRANSACTION_WORD_COUNT:
        raise WireError(f"WordCount {word_count} is not {TRANSACTION_WORD_COUNT}")
    setup_count = user_data[SETUP_COUNT_OFFSET]
    if setup_count != MAILSLOT_SETUP_COUNT:
        raise WireError(f"SetupCount {setup_count} is not {MAILSLOT_SETUP_COUNT}")
    name_end = user_data.find(b"\x00", TRANSACTION_NAME_OFFSET) + 1
    if not name_end:
        raise WireError("mailslot name has no terminating NUL")
    words = _TRANSACTION_WORDS.unpack_from(user_data, SMB_HEADER_LENGTH)
    data_count, data_offset, opcode = words[12], words[13], words[16]
    if opcode != MAILSLOT_WRITE:
        raise WireError(f"transaction opcode {opcode} is not a mailslot write")
    if data_offset < name_end:
        raise WireError(f"DataOffset {data_offset} points into the words or the mailslot name")
    if data_offset + data_count > len(user_data):
        raise WireError(
            f"DataOffset {data_offset} + DataCount {data_count} runs past {len(user_data)} bytes"
        )
    mailslot_name = user_data[TRANSACTION_NAME_OFFSET : name_end - 1]
    return MailslotWrite(mailslot_name, user_data[data_offset : data_offset + data_count])


def parse_messenger_payload(payload: bytes) -> MessengerPayload:
    """`From\\0To\\0Text`, with an optional final NUL and no type byte (PROTOCOL.md §5).

    Raises WireError for a missing terminator, a From or To over MAX_FIELD_BYTES, or text over
    MAX_TEXT_BYTES.
    """
    sender, position = _field(payload, 0, "From")
    recipient, position = _field(payload, position, "To")
    text = payload[position:]
    if text.endswith(b"\x00"):
        text = text[:-1]
    if len(text) > MAX_TEXT_BYTES:
        raise WireError(f"message text is {len(text)} bytes; at most {MAX_TEXT_BYTES}")
    return MessengerPayload(sender, recipient, text)


def _field(payload: bytes, start: int, label: str) -> tuple[bytes, int]:
    """The NUL-terminated field at `start`, at most MAX_FIELD_BYTES, and the offset after it."""
    end = payload.find(b"\x00", start, start + MAX_FIELD_BYTES + 1)
    if end < 0:
        if len(payload) - start > MAX_FIELD_BYTES:
            raise WireError(f"{label} field is longer than {MAX_FIELD_BYTES} bytes")
        raise WireError(f"{label} field has no terminating NUL")
    return payload[start:end], end + 1


def build_messenger_payload(sender: bytes, recipient: bytes, text: bytes) -> bytes:
    """`From\\0To\\0Text\\0` as a sender writes it to the mailslot (PROTOCOL.md §5)."""
    for label, value in (("From", sender), ("To", recipient), ("text", text)):
        if b"\x00" in value:
            raise WireError(f"{label} contains a NUL")
    for label, value in (("From", sender), ("To", recipient)):
        if len(value) > MAX_FIELD_BYTES:
            raise WireError(f"{label} is {len(value)} bytes; at most {MAX_FIELD_BYTES}")
    return b"\x00".join((sender, recipient, text)) + b"\x00"


def build_mailslot_write(
    data: bytes, *, mailslot_name: bytes = MESSENGER_MAILSLOT, pad: int = 0
) -> bytes:
    """An SMB_COM_TRANSACTION writing `data` to a mailslot ([MS-MAIL] §2.2.1).

    `pad` bytes go between the name and the data, as Windows 98 put WIN98_DATA_PAD there.
    """
    if b"\x00" in mailslot_name:
        raise WireError("mailslot name contains a NUL")
    byte_count = len(mailslot_name) + 1 + pad + len(data)
    if pad < 0 or byte_count > MAX_DGM_LENGTH:
        raise WireError(f"mailslot write of {byte_count} bytes does not fit an SMB")
    data_offset = TRANSACTION_NAME_OFFSET + len(mailslot_name) + 1 + pad
    words = _TRANSACTION_WORDS.pack(
        TRANSACTION_WORD_COUNT,
        0,  # TotalParameterCount: a mailslot write has no parameters
        len(data),  # TotalDataCount
        0,  # MaxParameterCount
        0,  # MaxDataCount
        0,  # MaxSetupCount
        0,  # Reserved1
        0,  # Flags
        0,  # Timeout
        0,  # Reserved2
        0,  # ParameterCount
        0,  # ParameterOffset
        len(data),  # DataCount
        data_offset,
        MAILSLOT_SETUP_COUNT,
        0,  # Reserved3
        MAILSLOT_WRITE,
        MAILSLOT_PRIORITY,
        MAILSLOT_CLASS_UNRELIABLE,
        byte_count,
    )
    name = mailslot_name + b"\x00" + bytes(pad)
    return build_request_header(SMB_COM_TRANSACTION) + words + name + data


def build_datagram(
    user_data: bytes,
    *,
    source_name: NetBIOSName,
    destination_name: NetBIOSName,
    source_ip: str,
    source_port: int = NETBIOS_DATAGRAM_PORT,
    datagram_id: int,
    msg_type: int = DIRECT_UNIQUE,
    flags: int = FLAG_FIRST,
    packet_offset: int = 0,
) -> bytes:
    """One direct unique, direct group or broadcast datagram or fragment (RFC 1002 §4.4.2)."""
    if msg_type not in DATA_MSG_TYPES:
        raise WireError(f"MSG_TYPE 0x{msg_type:02X} carries no user data")
    try:
        ipaddress.IPv4Address(source_ip)
    except ValueError as exc:
        raise WireError(f"source IP {source_ip!r} is not an IPv4 address") from exc
    for label, value, bound in (
        ("DGM_ID", datagram_id, 0xFFFF),
        ("SOURCE_PORT", source_port, 0xFFFF),
        ("FLAGS", flags, 0xFF),
        ("PACKET_OFFSET", packet_offset, MAX_DGM_LENGTH),
    ):
        if not 0 <= value <= bound:
            raise WireError(f"{label} {value} is outside 0..{bound}")
    names = source_name.encode() + destination_name.encode()
    dgm_length = len(names) + len(user_data)
    if dgm_length > MAX_DGM_LENGTH:
        raise WireError(f"{len(user_data)} bytes of user data do not fit DGM_LENGTH")
    header = _COMMON.pack(
        msg_type, flags, datagram_id, ipaddress.IPv4Address(source_ip).packed, source_port
    ) + _LENGTHS.pack(dgm_length, packet_offset)
    return header + names + user_data


def build_mailslot_datagrams(
    sender: bytes,
    recipient: bytes,
    text: bytes,
    *,
    source_name: NetBIOSName,
    destination_name: NetBIOSName,
    source_ip: str,
    source_port: int = NETBIOS_DATAGRAM_PORT,
    datagram_id: int,
    msg_type: int = DIRECT_UNIQUE,
    max_datagram: int = MESSENGER_DATAGRAM_BYTES,
) -> list[bytes]:
    """The Messenger datagrams for one message, each a whole `\\MAILSLOT\\MESSNGR` write.

    Text that does not fit `max_datagram` bytes is split over several datagrams, each repeating
    From and To, with DGM_IDs counting up from `datagram_id`, as old senders did
    (PROTOCOL.md §5). Raises WireError when `max_datagram` leaves no room for any text.
    """

    def build(chunk: bytes, number: int) -> bytes:
        return build_datagram(
            build_mailslot_write(build_messenger_payload(sender, recipient, chunk)),
            source_name=source_name,
            destination_name=destination_name,
            source_ip=source_ip,
            source_port=source_port,
            datagram_id=(datagram_id + number) & 0xFFFF,
            msg_type=msg_type,
        )

    room = max_datagram - len(build(b"", 0))
    if room < 0 or (room == 0 and text):
        raise WireError(f"a datagram of {max_datagram} bytes leaves no room for the message")
    chunks = _split_text(text, room) if text else [b""]
    return [build(chunk, number) for number, chunk in enumerate(chunks)]


def _split_text(text: bytes, room: int) -> list[bytes]:
    """`text` in pieces of at most `room` bytes, never parting a CR from the LF after it."""
    chunks = []
    while text:
        cut = min(room, len(text))
        if 1 < cut < len(text) and text[cut - 1 : cut + 1] == b"\r\n":
            cut -= 1
        chunks.append(text[:cut])
        text = text[cut:]
    return chunks


def fragment_datagram(datagram: bytes, fragment_size: int) -> list[bytes]:
    """Split a whole datagram into RFC 1002 fragments of `fragment_size` user-data bytes.

    Each fragment repeats the header and both names; the first has FIRST, all but the last
    have MORE, and PACKET_OFFSET is where its user data starts in the whole datagram's
    (RFC 1002 §4.4.1-4.4.2).
    """
    if fragment_size <= 0:
        raise WireError(f"fragment size {fragment_size} is not positive")
    whole = parse_datagram(datagram)
    if not isinstance(whole, DirectDatagram) or whole.is_fragment:
        raise WireError("only a whole direct or broadcast datagram can be fragmented")
    starts = range(0, max(len(whole.user_data), 1), fragment_size)
    fragments = []
    for number, start in enumerate(starts):
        flags = whole.flags & NODE_TYPE_MASK
        if number == 0:
            flags |= FLAG_FIRST
        if number < len(starts) - 1:
            flags |= FLAG_MORE
        fragments.append(
            build_datagram(
                whole.user_data[start : start + fragment_size],
                source_name=whole.source_name,
                destination_name=whole.destination_name,
                source_ip=whole.source_ip,
                source_port=whole.source_port,
                datagram_id=whole.datagram_id,
                msg_type=whole.msg_type,
                flags=flags,
                packet_offset=start,
            )
        )
    return fragments
