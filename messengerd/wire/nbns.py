"""NetBIOS name service packets, UDP 137 (RFC 1002 §4.2): a strict parser and builders, struct.

`parse_nbns` turns received bytes into small typed packets; the `build_*` functions write every
packet messengerd sends. scapy's own `scapy.layers.netbios` lacks release, refresh and negative
answers, cannot carry a scope, dispatches only on exact NM_FLAGS values and writes a wrong node
status response (6 bytes too many, RDLENGTH fixed at 83); the layers in
messengerd.wire.layers.nbns replace it and are the reference definition. The layers and the
parser share one dispatch (`packet_kind`), and tests hold the builders to the layers' bytes
and the parser to what the layers dissect, on built packets, real captures and generated
fields (tests/unit/wire/test_nbns_codec.py).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from messengerd.wire.errors import WireError
from messengerd.wire.names import (
    MAX_ENCODED_NAME_LENGTH,
    NETBIOS_NAME_LENGTH,
    WILDCARD_NAME,
    NetBIOSName,
    decode_first_level,
)

NAME_SERVICE_PORT = 137
"""NAME_SERVICE_UDP_PORT (RFC 1002 §6)."""

HEADER_LENGTH = 12
"""NAME_TRN_ID, flags and the four section counts (RFC 1002 §4.2.1.1)."""

MAX_DATAGRAM_LENGTH = 576
"""MAX_DATAGRAM_LENGTH, 576 bytes by default (RFC 1002 §6). The limit on what we send; Samba's
nmbd caps its node status answers to the same size (MAX_DGRAM_SIZE)."""

RR_FIXED_LENGTH = 10
"""RR_TYPE, RR_CLASS, TTL and RDLENGTH after a resource record's name (RFC 1002 §4.2.1.3)."""
QUESTION_FIXED_LENGTH = 4
"""QUESTION_TYPE and QUESTION_CLASS after a question's name (RFC 1002 §4.2.1.2)."""

ADDR_ENTRY_LENGTH = 6
"""NB_FLAGS (2) and NB_ADDRESS (4) of one ADDR_ENTRY (RFC 1002 §4.2.13)."""
NODE_NAME_ENTRY_LENGTH = 18
"""NETBIOS_NAME (16) and NAME_FLAGS (2) of one NODE_NAME entry (RFC 1002 §4.2.18)."""
NUM_NAMES_LENGTH = 1
"""NUM_NAMES is one byte (RFC 1002 §4.2.18)."""
MAX_NODE_NAMES = 255
"""The most names NUM_NAMES can count (RFC 1002 §4.2.18)."""
UNIT_ID_LENGTH = 6
"""UNIT_ID, the MAC address, opens the statistics (RFC 1002 §4.2.18)."""
STATISTICS_LENGTH = 46
"""The whole STATISTICS block, UNIT_ID through SESSION_DATA_PACKET_SIZE (RFC 1002 §4.2.18)."""
WACK_RDATA_LENGTH = 2
"""A WACK's RDATA is the request's flags word (RFC 1002 §4.2.16)."""

MAX_NODE_STATUS_RDLENGTH = (
    NUM_NAMES_LENGTH + MAX_NODE_NAMES * NODE_NAME_ENTRY_LENGTH + STATISTICS_LENGTH
)
"""RDLENGTH of a node status response listing 255 names (RFC 1002 §4.2.18)."""
MAX_MESSAGE_LENGTH = (
    HEADER_LENGTH + MAX_ENCODED_NAME_LENGTH + RR_FIXED_LENGTH + MAX_NODE_STATUS_RDLENGTH
)
"""The largest well-formed name service packet, a full node status response; longer input is
not a name service packet. Received packets are not held to MAX_DATAGRAM_LENGTH, which other
stacks may exceed with a long node status answer."""

LABEL_POINTER = 0xC0
"""The top two bits of a compressed label pointer (RFC 883 §3.1, used by RFC 1002 §4.1)."""
QUESTION_NAME_POINTER = 0xC000 | HEADER_LENGTH
"""`C0 0C`: the additional record's RR_NAME pointing at the question name (RFC 1002 §4.2.2)."""

DEFAULT_TTL = 300_000
"""Seconds a registration or positive answer asks to be kept: the value Windows sends
(dos_win98_smb_netbeui.pcap registrations, netbios.pcap frame 69)."""

# OPCODE (RFC 1002 §4.2.1.1).
OPCODE_QUERY = 0x0
OPCODE_REGISTRATION = 0x5
OPCODE_RELEASE = 0x6
OPCODE_WACK = 0x7
OPCODE_REFRESH = 0x8
OPCODE_REFRESH_ALTERNATE = 0x9
"""RFC 1002 is ambiguous between 8 and 9 for refresh; Windows NT sends 8 unless set to 9 (Samba)."""
OPCODE_MULTIHOMED_REGISTRATION = 0xF
"""Microsoft's registration of a name held on several addresses (Samba's nmbd.h)."""

# The 16-bit flags word: R, OPCODE, NM_FLAGS (AA TC RD RA 0 0 B), RCODE (RFC 1002 §4.2.1.1).
FLAG_R = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_B = 0x0010
OPCODE_SHIFT = 11
OPCODE_MASK = 0xF
RCODE_MASK = 0xF

# RCODE (RFC 1002 §4.2.6, §4.2.11, §4.2.14).
FMT_ERR = 0x1
SRV_ERR = 0x2
NAM_ERR = 0x3
IMP_ERR = 0x4
RFS_ERR = 0x5
ACT_ERR = 0x6
CFT_ERR = 0x7

# NB_FLAGS of an ADDR_ENTRY and NAME_FLAGS of a NODE_NAME entry (RFC 1002 §4.2.2, §4.2.18).
NB_FLAG_G = 0x8000
"""Group name."""
NB_FLAG_ONT = 0x6000
"""Owner node type, two bits."""
ONT_B = 0x0000
ONT_P = 0x2000
ONT_M = 0x4000
ONT_H = 0x6000
"""Reserved in RFC 1002; Microsoft's hybrid node."""
NAME_FLAG_DRG = 0x1000
"""Deregister: the name is being deleted."""
NAME_FLAG_CNF = 0x0800
"""Conflict detected."""
NAME_FLAG_ACT = 0x0400
"""Active name; Windows and Samba set it on every name they list."""
NAME_FLAG_PRM = 0x0200
"""The node's permanent name."""

# QUESTION_TYPE / RR_TYPE and class (RFC 1002 §4.2.1.2, §4.2.1.3).
TYPE_NULL = 0x000A
"""Carried by a negative name query response (RFC 1002 §4.2.14)."""
TYPE_NB = 0x0020
TYPE_NBSTAT = 0x0021
CLASS_IN = 0x0001

QUERY_REQUEST_COUNTS = (1, 0, 0, 0)
"""QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT of a query or node status request (RFC 1002 §4.2.12,
§4.2.17). RFC 1002 gives every packet exact counts; anything else is rejected, which also
bounds how much a packet can make the parser read."""
NAME_REQUEST_COUNTS = (1, 0, 0, 1)
"""Registration, overwrite, refresh and release: a question and one additional record
(RFC 1002 §4.2.2-4.2.4, §4.2.9)."""
RESPONSE_COUNTS = (0, 1, 0, 0)
"""Every response RFC 1002 §4.2 defines but one: a single answer record. The redirect name
query response (§4.2.15) comes only from a name server to P and M nodes and is refused."""

RCODE_NAMES = {
    0: "ok",
    FMT_ERR: "FMT_ERR",
    SRV_ERR: "SRV_ERR",
    NAM_ERR: "NAM_ERR",
    IMP_ERR: "IMP_ERR",
    RFS_ERR: "RFS_ERR",
    ACT_ERR: "ACT_ERR",
    CFT_ERR: "CFT_ERR",
}
"""RCODE values by their RFC 1002 names."""
_NAME_REQUEST_OPCODES = frozenset(
    {
        OPCODE_REGISTRATION,
        OPCODE_MULTIHOMED_REGISTRATION,
        OPCODE_RELEASE,
        OPCODE_REFRESH,
        OPCODE_REFRESH_ALTERNATE,
    }
)
_REGISTRATION_RESPONSE_OPCODES = frozenset(
    {OPCODE_REGISTRATION, OPCODE_MULTIHOMED_REGISTRATION, OPCODE_REFRESH, OPCODE_REFRESH_ALTERNATE}
)
_WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)
_HEADER = struct.Struct("!6H")
"""NAME_TRN_ID, the flags word and QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT (RFC 1002 §4.2.1.1)."""
_QUESTION_FIXED = struct.Struct("!HH")
"""QUESTION_TYPE, QUESTION_CLASS (RFC 1002 §4.2.1.2)."""
_RR_FIXED = struct.Struct("!HHIH")
"""RR_TYPE, RR_CLASS, TTL, RDLENGTH (RFC 1002 §4.2.1.3)."""
_ADDR_ENTRY = struct.Struct("!H4s")
"""NB_FLAGS, NB_ADDRESS (RFC 1002 §4.2.13)."""
_NAME_FLAGS = struct.Struct("!H")
"""A NODE_NAME entry's NAME_FLAGS, a WACK's RDATA, a label pointer (RFC 1002 §4.2)."""


# --- typed packets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressEntry:
    """One ADDR_ENTRY: who holds a name, and how (RFC 1002 §4.2.13)."""

    nb_flags: int
    address: str

    @property
    def group(self) -> bool:
        """The G bit: a group name."""
        return bool(self.nb_flags & NB_FLAG_G)


@dataclass(frozen=True)
class NodeName:
    """One NODE_NAME entry of a node status answer (RFC 1002 §4.2.18)."""

    name: NetBIOSName
    name_flags: int

    @property
    def group(self) -> bool:
        """The G bit: a group name."""
        return bool(self.name_flags & NB_FLAG_G)

    @property
    def active(self) -> bool:
        """The ACT bit."""
        return bool(self.name_flags & NAME_FLAG_ACT)


@dataclass(frozen=True)
class NameServicePacket:
    """What every name service packet carries: the header and its one name (RFC 1002 §4.2.1)."""

    trn_id: int
    flags: int
    name: NetBIOSName

    @property
    def opcode(self) -> int:
        """OPCODE (RFC 1002 §4.2.1.1)."""
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def rcode(self) -> int:
        """RCODE; zero in requests and positive responses (RFC 1002 §4.2.1.1)."""
        return self.flags & RCODE_MASK

    @property
    def broadcast(self) -> bool:
        """The B bit: sent to the subnet's broadcast address."""
        return bool(self.flags & FLAG_B)

    @property
    def recursion_desired(self) -> bool:
        """The RD bit."""
        return bool(self.flags & FLAG_RD)


@dataclass(frozen=True)
class NameQuery(NameServicePacket):
    """NAME QUERY REQUEST: who holds `name`? (RFC 1002 §4.2.12)."""


@dataclass(frozen=True)
class NodeStatusQuery(NameServicePacket):
    """NODE STATUS REQUEST: which names does the node holding `name` have? (RFC 1002 §4.2.17)."""

    @property
    def wildcard(self) -> bool:
        """Asked for `*`, as `nbtstat -A` and `net send <IP>` do."""
        return self.name.to_bytes16() == WILDCARD_NAME


@dataclass(frozen=True)
class NameRecordRequest(NameServicePacket):
    """A request carrying one NB record for its name (RFC 1002 §4.2.2-4.2.4, §4.2.9)."""

    ttl: int
    nb_flags: int
    address: str

    @property
    def group(self) -> bool:
        """The G bit: a group name."""
        return bool(self.nb_flags & NB_FLAG_G)


@dataclass(frozen=True)
class NameRegistration(NameRecordRequest):
    """NAME REGISTRATION REQUEST, or with RD clear an OVERWRITE DEMAND (RFC 1002 §4.2.2-4.2.3)."""

    @property
    def overwrite_demand(self) -> bool:
        """RD clear: the sender takes the name without waiting for objections (§4.2.3)."""
        return not self.recursion_desired


@dataclass(frozen=True)
class NameRelease(NameRecordRequest):
    """NAME RELEASE REQUEST & DEMAND (RFC 1002 §4.2.9)."""


@dataclass(frozen=True)
class NameRefresh(NameRecordRequest):
    """NAME REFRESH REQUEST (RFC 1002 §4.2.4)."""


@dataclass(frozen=True)
class QueryResponse(NameServicePacket):
    """POSITIVE or NEGATIVE NAME QUERY RESPONSE (RFC 1002 §4.2.13-4.2.14)."""

    ttl: int
    entries: tuple[AddressEntry, ...]

    @property
    def positive(self) -> bool:
        """RCODE zero: `entries` hold the name's addresses."""
        return self.rcode == 0


@dataclass(frozen=True)
class NodeStatus(NameServicePacket):
    """NODE STATUS RESPONSE: the node's name table and statistics (RFC 1002 §4.2.18)."""

    node_names: tuple[NodeName, ...]
    statistics: bytes

    @property
    def unit_id(self) -> bytes:
        """UNIT_ID, the MAC address Windows puts first in the statistics."""
        return self.statistics[:UNIT_ID_LENGTH]


@dataclass(frozen=True)
class RegistrationResponse(NameServicePacket):
    """NAME REGISTRATION RESPONSE; RCODE ACT_ERR: an owner objects (RFC 1002 §4.2.5-4.2.8)."""

    ttl: int
    entries: tuple[AddressEntry, ...]

    @property
    def positive(self) -> bool:
        """RCODE zero."""
        return self.rcode == 0


@dataclass(frozen=True)
class ReleaseResponse(NameServicePacket):
    """POSITIVE or NEGATIVE NAME RELEASE RESPONSE (RFC 1002 §4.2.10-4.2.11)."""

    ttl: int
    entries: tuple[AddressEntry, ...]

    @property
    def positive(self) -> bool:
        """RCODE zero."""
        return self.rcode == 0


@dataclass(frozen=True)
class WaitForAcknowledgement(NameServicePacket):
    """WACK RESPONSE: wait `ttl` seconds for the real answer (RFC 1002 §4.2.16)."""

    ttl: int
    request_flags: int


def packet_kind(response: bool, opcode: int, record_type: int) -> type[NameServicePacket]:
    """The packet a header and the type of its first question or record make (RFC 1002 §4.2).

    The one dispatch of parse_nbns and of the layers (messengerd.wire.layers.nbns): on OPCODE,
    the R bit and the record type, never on exact NM_FLAGS. Raises WireError for anything else.
    """
    if not response:
        if opcode == OPCODE_QUERY:
            if record_type == TYPE_NB:
                return NameQuery
            if record_type == TYPE_NBSTAT:
                return NodeStatusQuery
            raise WireError(f"query for question type {record_type:#06x}")
        if opcode in (OPCODE_REGISTRATION, OPCODE_MULTIHOMED_REGISTRATION):
            return NameRegistration
        if opcode == OPCODE_RELEASE:
            return NameRelease
        if opcode in (OPCODE_REFRESH, OPCODE_REFRESH_ALTERNATE):
            return NameRefresh
        raise WireError(f"request with opcode {opcode} is not a name service operation")
    if opcode == OPCODE_QUERY:
        if record_type == TYPE_NBSTAT:
            return NodeStatus
        if record_type in (TYPE_NB, TYPE_NULL):
            return QueryResponse
        raise WireError(f"query response with record type {record_type:#06x}")
    if opcode in _REGISTRATION_RESPONSE_OPCODES:
        return RegistrationResponse
    if opcode == OPCODE_RELEASE:
        return ReleaseResponse
    if opcode == OPCODE_WACK:
        return WaitForAcknowledgement
    raise WireError(f"response with opcode {opcode} is not a name service operation")


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """A question (ttl 0, no rdata) or resource record as it stands on the wire."""

    name: NetBIOSName
    type: int
    klass: int
    ttl: int = 0
    rdata: bytes = b""


def _read_question(data: bytes, offset: int) -> tuple[_Record, int]:
    name, offset = decode_first_level(data, offset)
    if len(data) < offset + QUESTION_FIXED_LENGTH:
        raise WireError("question is truncated after its name")
    qtype, qclass = _QUESTION_FIXED.unpack_from(data, offset)
    return _Record(name, qtype, qclass), offset + QUESTION_FIXED_LENGTH


def _read_rr_name(data: bytes, offset: int) -> tuple[NetBIOSName, int]:
    if offset < len(data) and data[offset] & LABEL_POINTER == LABEL_POINTER:
        if len(data) < offset + 2:
            raise WireError("label pointer is truncated")
        target = struct.unpack_from("!H", data, offset)[0] & ~(LABEL_POINTER << 8)
        # Only a pointer backwards to a whole name is followed: it cannot loop, and RFC 1002
        # uses pointers for nothing else.
        if target >= offset:
            raise WireError(f"label pointer at {offset} points forward to {target}")
        name, _ = decode_first_level(data, target)
        return name, offset + 2
    return decode_first_level(data, offset)


def _read_record(data: bytes, offset: int) -> tuple[_Record, int]:
    name, offset = _read_rr_name(data, offset)
    if len(data) < offset + RR_FIXED_LENGTH:
        raise WireError("resource record is truncated after its name")
    rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
    offset += RR_FIXED_LENGTH
    if rdlength > len(data) - offset:
        raise WireError(f"RDLENGTH {rdlength} runs past the end of the packet")
    rdata = data[offset : offset + rdlength]
    return _Record(name, rtype, rclass, ttl, rdata), offset + rdlength


def _address_entries(rdata: bytes) -> tuple[AddressEntry, ...]:
    if len(rdata) % ADDR_ENTRY_LENGTH:
        raise WireError(f"RDLENGTH {len(rdata)} is not a whole number of ADDR_ENTRYs")
    return tuple(
        AddressEntry(
            struct.unpack_from("!H", rdata, at)[0],
            str(ipaddress.IPv4Address(rdata[at + 2 : at + ADDR_ENTRY_LENGTH])),
        )
        for at in range(0, len(rdata), ADDR_ENTRY_LENGTH)
    )


def _node_status(rr_name: NetBIOSName, rdata: bytes) -> tuple[tuple[NodeName, ...], bytes]:
    if not rdata:
        raise WireError("node status response has no RDATA")
    count = rdata[0]
    expected = NUM_NAMES_LENGTH + count * NODE_NAME_ENTRY_LENGTH + STATISTICS_LENGTH
    if len(rdata) != expected:
        raise WireError(f"node status RDLENGTH {len(rdata)} is not 18 * {count} + 47")
    names = []
    for index in range(count):
        at = NUM_NAMES_LENGTH + index * NODE_NAME_ENTRY_LENGTH
        raw16 = rdata[at : at + NETBIOS_NAME_LENGTH + 1]
        (name_flags,) = struct.unpack_from("!H", rdata, at + NETBIOS_NAME_LENGTH + 1)
        # The table holds the node's names in the scope the answer came in.
        names.append(NodeName(NetBIOSName.from_bytes16(raw16, rr_name.scope), name_flags))
    return tuple(names), rdata[-STATISTICS_LENGTH:]


def _check_record(record: _Record, expected_type: int) -> None:
    if record.type != expected_type:
        raise WireError(f"record type {record.type:#06x}, expected {expected_type:#06x}")
    if record.klass != CLASS_IN:
        raise WireError(f"record class {record.klass:#06x} is not IN")


def parse_nbns(data: bytes) -> NameServicePacket:
    """Decode one name service packet (RFC 1002 §4.2); WireError if it is not a well-formed one.

    Dispatches on OPCODE, the R bit, the section counts and the question or record type, never
    on exact NM_FLAGS. Bytes after the last record are ignored: some senders leave them there
    (scapy's NBNSNodeStatusResponse, for one, writes six past its RDATA).
    """
    if len(data) < HEADER_LENGTH:
        raise WireError(f"name service packet of {len(data)} bytes is shorter than its header")
    if len(data) > MAX_MESSAGE_LENGTH:
        raise WireError(f"name service packet of {len(data)} bytes exceeds {MAX_MESSAGE_LENGTH}")
    trn_id, flags, *counts = _HEADER.unpack_from(data)
    response = bool(flags & FLAG_R)
    opcode = (flags >> OPCODE_SHIFT) & OPCODE_MASK
    if not response:
        if opcode == OPCODE_QUERY:
            expected = QUERY_REQUEST_COUNTS
        elif opcode in _NAME_REQUEST_OPCODES:
            expected = NAME_REQUEST_COUNTS
        else:
            raise WireError(f"request with opcode {opcode} is not a name service operation")
    else:
        expected = RESPONSE_COUNTS
    if tuple(counts) != expected:
        raise WireError(f"section counts {tuple(counts)} for opcode {opcode}, expected {expected}")

    offset = HEADER_LENGTH
    question = record = None
    if expected[0]:
        question, offset = _read_question(data, offset)
    if expected[1] or expected[3]:
        record, offset = _read_record(data, offset)
    first = question or record
    assert first is not None
    kind = packet_kind(response, opcode, first.type)

    if question is not None:
        if question.klass != CLASS_IN:
            raise WireError(f"question class {question.klass:#06x} is not IN")
        if record is None:
            assert kind is NameQuery or kind is NodeStatusQuery
            return kind(trn_id, flags, question.name)
        _check_record(question, TYPE_NB)
        _check_record(record, TYPE_NB)
        if record.name != question.name:
            raise WireError(f"record name {record.name} differs from question {question.name}")
        if len(record.rdata) != ADDR_ENTRY_LENGTH:
            raise WireError(f"request RDLENGTH {len(record.rdata)} is not {ADDR_ENTRY_LENGTH}")
        (entry,) = _address_entries(record.rdata)
        assert issubclass(kind, NameRecordRequest)
        return kind(trn_id, flags, question.name, record.ttl, entry.nb_flags, entry.address)

    assert record is not None
    if kind is NodeStatus:
        _check_record(record, TYPE_NBSTAT)
        names, statistics = _node_status(record.name, record.rdata)
        return NodeStatus(trn_id, flags, record.name, names, statistics)
    if kind is WaitForAcknowledgement:
        _check_record(record, TYPE_NB)
        if len(record.rdata) != WACK_RDATA_LENGTH:
            raise WireError(f"WACK RDLENGTH {len(record.rdata)} is not {WACK_RDATA_LENGTH}")
        (request_flags,) = _NAME_FLAGS.unpack(record.rdata)
        return WaitForAcknowledgement(trn_id, flags, record.name, record.ttl, request_flags)
    negative = bool(flags & RCODE_MASK)
    if kind is QueryResponse and negative and record.type == TYPE_NULL:
        _check_record(record, TYPE_NULL)
        return QueryResponse(trn_id, flags, record.name, record.ttl, ())
    _check_record(record, TYPE_NB)
    entries = _address_entries(record.rdata)
    if kind is QueryResponse and not negative and not entries:
        raise WireError("positive name query response without an address")
    assert kind is QueryResponse or kind is RegistrationResponse or kind is ReleaseResponse
    return kind(trn_id, flags, record.name, record.ttl, entries)


# --- building --------------------------------------------------------------------------------


def _ipv4(address: str) -> bytes:
    try:
        return ipaddress.IPv4Address(address).packed
    except ValueError as exc:
        raise WireError(f"{address!r} is not an IPv4 address") from exc


def _check_ttl(ttl: int) -> int:
    if not 0 <= ttl <= 0xFFFFFFFF:
        raise WireError(f"TTL {ttl} does not fit 32 bits")
    return ttl


def _check_flags(label: str, flags: int) -> int:
    if not 0 <= flags <= 0xFFFF:
        raise WireError(f"{label} {flags:#x} does not fit 16 bits")
    return flags


def _header(trn_id: int, flags: int, counts: tuple[int, int, int, int]) -> bytes:
    """The 12-byte header (RFC 1002 §4.2.1.1)."""
    if not 0 <= trn_id <= 0xFFFF:
        raise WireError(f"NAME_TRN_ID {trn_id} does not fit 16 bits")
    return _HEADER.pack(trn_id, flags, *counts)


def _question(name: NetBIOSName, question_type: int) -> bytes:
    """QUESTION_NAME, QUESTION_TYPE and class IN (RFC 1002 §4.2.1.2)."""
    return name.encode() + _QUESTION_FIXED.pack(question_type, CLASS_IN)


def _resource_record(name: bytes, record_type: int, ttl: int, rdata: bytes) -> bytes:
    """RR_NAME (encoded, or a pointer), type, class IN, TTL, RDLENGTH and RDATA (§4.2.1.3)."""
    return name + _RR_FIXED.pack(record_type, CLASS_IN, _check_ttl(ttl), len(rdata)) + rdata


def _address_entry(nb_flags: int, address: str) -> bytes:
    """One ADDR_ENTRY (RFC 1002 §4.2.13)."""
    return _ADDR_ENTRY.pack(_check_flags("NB_FLAGS", nb_flags), _ipv4(address))


def build_name_query_request(
    trn_id: int, name: NetBIOSName, *, broadcast: bool = True, recursion_desired: bool = True
) -> bytes:
    """NAME QUERY REQUEST; broadcast with RD gives Windows' flags 0x0110 (RFC 1002 §4.2.12)."""
    flags = (FLAG_B if broadcast else 0) | (FLAG_RD if recursion_desired else 0)
    return _header(trn_id, flags, QUERY_REQUEST_COUNTS) + _question(name, TYPE_NB)


def build_node_status_request(trn_id: int, name: NetBIOSName = _WILDCARD) -> bytes:
    """NODE STATUS REQUEST, flags 0x0000, for `*` unless told (RFC 1002 §4.2.17)."""
    return _header(trn_id, 0, QUERY_REQUEST_COUNTS) + _question(name, TYPE_NBSTAT)


def build_positive_name_query_response(
    trn_id: int, name: NetBIOSName, address: str, *, nb_flags: int = ONT_B, ttl: int = DEFAULT_TTL
) -> bytes:
    """POSITIVE NAME QUERY RESPONSE, flags 0x8500 as Windows sends (RFC 1002 §4.2.13)."""
    entry = _address_entry(nb_flags, address)
    flags = FLAG_R | FLAG_AA | FLAG_RD
    return _header(trn_id, flags, RESPONSE_COUNTS) + _resource_record(
        name.encode(), TYPE_NB, ttl, entry
    )


def build_negative_name_query_response(
    trn_id: int, name: NetBIOSName, *, rcode: int = NAM_ERR
) -> bytes:
    """NEGATIVE NAME QUERY RESPONSE, flags 0x8503 for NAM_ERR (RFC 1002 §4.2.14)."""
    if not 0 < rcode <= RCODE_MASK:
        raise WireError(f"a negative answer needs an RCODE from 1 to 15, not {rcode}")
    flags = FLAG_R | FLAG_AA | FLAG_RD | rcode
    return _header(trn_id, flags, RESPONSE_COUNTS) + _resource_record(
        name.encode(), TYPE_NULL, 0, b""
    )


def node_status_capacity(name: NetBIOSName) -> int:
    """How many NODE_NAME entries fit a node status answer for `name` in MAX_DATAGRAM_LENGTH."""
    fixed = (
        HEADER_LENGTH + len(name.encode()) + RR_FIXED_LENGTH + NUM_NAMES_LENGTH + STATISTICS_LENGTH
    )
    return max(0, min(MAX_NODE_NAMES, (MAX_DATAGRAM_LENGTH - fixed) // NODE_NAME_ENTRY_LENGTH))


def build_node_status_response(
    trn_id: int, name: NetBIOSName, node_names: Sequence[NodeName], *, unit_id: bytes = bytes(6)
) -> bytes:
    """NODE STATUS RESPONSE, flags 0x8400, TTL 0, RDLENGTH 18 * n + 47 (RFC 1002 §4.2.18).

    `unit_id` (the MAC) opens the statistics, the rest of which are zero as Windows and Samba
    send them. Raises WireError when the names do not fit `node_status_capacity(name)`.
    """
    if len(unit_id) != UNIT_ID_LENGTH:
        raise WireError(f"UNIT_ID has {UNIT_ID_LENGTH} bytes, not {len(unit_id)}")
    capacity = node_status_capacity(name)
    if len(node_names) > capacity:
        raise WireError(f"{len(node_names)} names do not fit a node status answer ({capacity})")
    entries = b"".join(
        entry.name.to_bytes16() + _NAME_FLAGS.pack(_check_flags("NAME_FLAGS", entry.name_flags))
        for entry in node_names
    )
    statistics = unit_id + bytes(STATISTICS_LENGTH - UNIT_ID_LENGTH)
    rdata = bytes([len(node_names)]) + entries + statistics
    flags = FLAG_R | FLAG_AA
    return _header(trn_id, flags, RESPONSE_COUNTS) + _resource_record(
        name.encode(), TYPE_NBSTAT, 0, rdata
    )


def _name_request(
    opcode: int,
    trn_id: int,
    name: NetBIOSName,
    address: str,
    nb_flags: int,
    ttl: int,
    flags: int,
) -> bytes:
    """A question for `name` and one additional record pointing back at it (RFC 1002 §4.2.2)."""
    record = _resource_record(
        _NAME_FLAGS.pack(QUESTION_NAME_POINTER), TYPE_NB, ttl, _address_entry(nb_flags, address)
    )
    header = _header(trn_id, (opcode << OPCODE_SHIFT) | flags, NAME_REQUEST_COUNTS)
    return header + _question(name, TYPE_NB) + record


def build_name_registration_request(
    trn_id: int,
    name: NetBIOSName,
    address: str,
    *,
    nb_flags: int = ONT_B,
    ttl: int = DEFAULT_TTL,
    broadcast: bool = True,
) -> bytes:
    """NAME REGISTRATION REQUEST; flags 0x2910 broadcast, 0x2900 to a name server (§4.2.2)."""
    flags = FLAG_RD | (FLAG_B if broadcast else 0)
    return _name_request(OPCODE_REGISTRATION, trn_id, name, address, nb_flags, ttl, flags)


def build_name_overwrite_demand(
    trn_id: int,
    name: NetBIOSName,
    address: str,
    *,
    nb_flags: int = ONT_B,
    ttl: int = DEFAULT_TTL,
) -> bytes:
    """NAME OVERWRITE DEMAND, flags 0x2810: a B node's last word on a name (RFC 1002 §4.2.3)."""
    return _name_request(OPCODE_REGISTRATION, trn_id, name, address, nb_flags, ttl, FLAG_B)


def build_name_release_request(
    trn_id: int,
    name: NetBIOSName,
    address: str,
    *,
    nb_flags: int = ONT_B,
    broadcast: bool = True,
) -> bytes:
    """NAME RELEASE REQUEST & DEMAND, flags 0x3010 broadcast, TTL 0 (RFC 1002 §4.2.9)."""
    flags = FLAG_B if broadcast else 0
    return _name_request(OPCODE_RELEASE, trn_id, name, address, nb_flags, 0, flags)


def build_name_refresh_request(
    trn_id: int,
    name: NetBIOSName,
    address: str,
    *,
    nb_flags: int = ONT_B,
    ttl: int = DEFAULT_TTL,
    opcode: int = OPCODE_REFRESH,
    broadcast: bool = False,
) -> bytes:
    """NAME REFRESH REQUEST, flags 0x4000 to a name server as Samba sends it (RFC 1002 §4.2.4)."""
    if opcode not in (OPCODE_REFRESH, OPCODE_REFRESH_ALTERNATE):
        raise WireError(f"opcode {opcode} is not a refresh")
    flags = FLAG_B if broadcast else 0
    return _name_request(opcode, trn_id, name, address, nb_flags, ttl, flags)


def build_name_registration_response(
    trn_id: int,
    name: NetBIOSName,
    address: str,
    *,
    nb_flags: int = ONT_B,
    rcode: int = 0,
    ttl: int = 0,
) -> bytes:
    """POSITIVE (0xAD80) or NEGATIVE (e.g. ACT_ERR, 0xAD86) NAME REGISTRATION RESPONSE (§4.2.5-6).

    To defend a name, Samba sends ACT_ERR with the request's own NB_FLAGS and address.
    """
    if not 0 <= rcode <= RCODE_MASK:
        raise WireError(f"RCODE {rcode} does not fit 4 bits")
    entry = _address_entry(nb_flags, address)
    flags = FLAG_R | (OPCODE_REGISTRATION << OPCODE_SHIFT) | FLAG_AA | FLAG_RD | FLAG_RA | rcode
    return _header(trn_id, flags, RESPONSE_COUNTS) + _resource_record(
        name.encode(), TYPE_NB, ttl, entry
    )


def build_negative_name_registration_response(
    trn_id: int, name: NetBIOSName, address: str, *, nb_flags: int = ONT_B, rcode: int = ACT_ERR
) -> bytes:
    """NEGATIVE NAME REGISTRATION RESPONSE, ACT_ERR by default: "this name is mine" (§4.2.6)."""
    if rcode == 0:
        raise WireError("a negative registration response needs a non-zero RCODE")
    return build_name_registration_response(trn_id, name, address, nb_flags=nb_flags, rcode=rcode)


def build_name_release_response(
    trn_id: int, name: NetBIOSName, address: str, *, nb_flags: int = ONT_B, rcode: int = 0
) -> bytes:
    """POSITIVE (0xB400) or NEGATIVE NAME RELEASE RESPONSE (RFC 1002 §4.2.10-4.2.11)."""
    if not 0 <= rcode <= RCODE_MASK:
        raise WireError(f"RCODE {rcode} does not fit 4 bits")
    entry = _address_entry(nb_flags, address)
    flags = FLAG_R | (OPCODE_RELEASE << OPCODE_SHIFT) | FLAG_AA | rcode
    return _header(trn_id, flags, RESPONSE_COUNTS) + _resource_record(
        name.encode(), TYPE_NB, 0, entry
    )
