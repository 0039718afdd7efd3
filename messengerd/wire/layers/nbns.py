"""NetBIOS name service packets, UDP 137 (RFC 1002 §4.2), as scapy layers.

scapy's own `scapy.layers.netbios` lacks release, refresh and negative answers, cannot carry a
scope, dispatches only on exact NM_FLAGS values and writes a wrong node status response
(6 bytes too many, RDLENGTH fixed at 83). The layers here replace it: `NameServiceHeader(data)`
dissects any name service packet, choosing its body with messengerd.wire.nbns.packet_kind, the
dispatch parse_nbns uses. These are the reference definition; the runtime reads and builds the
same bytes with messengerd.wire.nbns.
"""

from __future__ import annotations

import struct

from scapy.config import conf
from scapy.fields import (
    BitEnumField,
    BitField,
    Field,
    FieldLenField,
    IntField,
    IPField,
    MACField,
    PacketListField,
    ShortEnumField,
    ShortField,
    StrFixedLenField,
    XByteField,
    XShortField,
    XStrFixedLenField,
)
from scapy.packet import Packet, bind_top_down

from messengerd.wire.errors import WireError
from messengerd.wire.names import (
    NETBIOS_NAME_LENGTH,
    WILDCARD_NAME,
    NetBIOSName,
    decode_first_level,
)
from messengerd.wire.nbns import (
    ADDR_ENTRY_LENGTH,
    CLASS_IN,
    DEFAULT_TTL,
    LABEL_POINTER,
    NAM_ERR,
    NAME_FLAG_ACT,
    NUM_NAMES_LENGTH,
    ONT_B,
    OPCODE_MULTIHOMED_REGISTRATION,
    OPCODE_QUERY,
    OPCODE_REFRESH,
    OPCODE_REFRESH_ALTERNATE,
    OPCODE_REGISTRATION,
    OPCODE_RELEASE,
    OPCODE_WACK,
    QUESTION_NAME_POINTER,
    RCODE_NAMES,
    STATISTICS_LENGTH,
    TYPE_NB,
    TYPE_NBSTAT,
    TYPE_NULL,
    UNIT_ID_LENGTH,
    WACK_RDATA_LENGTH,
    NameQuery,
    NameRefresh,
    NameRegistration,
    NameRelease,
    NameServicePacket,
    NodeStatus,
    NodeStatusQuery,
    QueryResponse,
    RegistrationResponse,
    ReleaseResponse,
    WaitForAcknowledgement,
    packet_kind,
)

_OPCODE_NAMES = {
    OPCODE_QUERY: "query",
    OPCODE_REGISTRATION: "registration",
    OPCODE_RELEASE: "release",
    OPCODE_WACK: "WACK",
    OPCODE_REFRESH: "refresh",
    OPCODE_REFRESH_ALTERNATE: "refresh (9)",
    OPCODE_MULTIHOMED_REGISTRATION: "multi-homed registration",
}
_TYPE_NAMES = {TYPE_NULL: "NULL", TYPE_NB: "NB", TYPE_NBSTAT: "NBSTAT"}
_CLASS_NAMES = {CLASS_IN: "IN"}
_WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)


class EncodedNameField(Field[NetBIOSName, bytes]):
    """A first-level encoded NetBIOS name with its scope, held as a NetBIOSName (RFC 1002 §4.1)."""

    def __init__(self, name: str, default: NetBIOSName) -> None:
        Field.__init__(self, name, default)

    def any2i(self, pkt: Packet | None, x: object) -> NetBIOSName:
        if isinstance(x, NetBIOSName):
            return x
        if isinstance(x, bytes):
            return NetBIOSName.from_bytes16(x)
        raise WireError(f"{self.name} takes a NetBIOSName, not {x!r}")

    def i2m(self, pkt: Packet | None, x: NetBIOSName | None) -> bytes:
        name = x if x is not None else self.default
        return b"" if name is None else name.encode()

    def i2len(self, pkt: Packet, x: NetBIOSName) -> int:
        return len(self.i2m(pkt, x))

    def addfield(self, pkt: Packet, s: bytes, val: NetBIOSName | None) -> bytes:
        return s + self.i2m(pkt, val)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, NetBIOSName]:
        name, end = decode_first_level(s)
        return s[end:], name

    def i2repr(self, pkt: Packet | None, x: NetBIOSName) -> str:
        return str(x)


class RRNameField(EncodedNameField):
    """An additional record's RR_NAME: the `C0 0C` pointer to the question, or a full name."""

    def any2i(self, pkt: Packet | None, x: object) -> NetBIOSName | int:  # type: ignore[override]
        if isinstance(x, int):
            return x
        return super().any2i(pkt, x)

    def i2m(self, pkt: Packet | None, x: NetBIOSName | int | None) -> bytes:
        if x is None:
            x = self.default
        if isinstance(x, int):
            return struct.pack("!H", x)
        return b"" if x is None else x.encode()

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, NetBIOSName | int]:  # type: ignore[override]
        if s[:1] and s[0] & LABEL_POINTER == LABEL_POINTER:
            if len(s) < 2:
                raise WireError("label pointer is truncated")
            return s[2:], struct.unpack("!H", s[:2])[0]
        return super().getfield(pkt, s)

    def i2repr(self, pkt: Packet | None, x: NetBIOSName | int) -> str:
        if isinstance(x, int):
            return f"pointer to offset {x & ~(LABEL_POINTER << 8)}"
        return str(x)


class NameServiceHeader(Packet):
    """The name service packet header (RFC 1002 §4.2.1.1); the payload is chosen from it."""

    name = "NBNS header"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        XShortField("NAME_TRN_ID", 0),
        BitField("R", 0, 1),
        BitEnumField("OPCODE", OPCODE_QUERY, 4, _OPCODE_NAMES),
        BitField("AA", 0, 1),
        BitField("TC", 0, 1),
        BitField("RD", 0, 1),
        BitField("RA", 0, 1),
        BitField("RESERVED", 0, 2),
        BitField("B", 0, 1),
        BitEnumField("RCODE", 0, 4, RCODE_NAMES),
        ShortField("QDCOUNT", 0),
        ShortField("ANCOUNT", 0),
        ShortField("NSCOUNT", 0),
        ShortField("ARCOUNT", 0),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        # Dispatch on the header and the record type, not on exact NM_FLAGS like scapy's
        # own bindings: real senders vary B, RD and RA freely.
        try:
            _, end = decode_first_level(payload)
            if len(payload) < end + 2:
                raise WireError("no type after the name")
            record_type = struct.unpack_from("!H", payload, end)[0]
            return layer_for(bool(self.R), self.OPCODE, self.RCODE, record_type)
        except WireError:
            return conf.raw_layer


class AddrEntry(Packet):
    """One ADDR_ENTRY: NB_FLAGS and NB_ADDRESS (RFC 1002 §4.2.13)."""

    name = "NBNS ADDR_ENTRY"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        XShortField("NB_FLAGS", 0),
        IPField("NB_ADDRESS", "0.0.0.0"),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class NodeNameEntry(Packet):
    """One NODE_NAME entry of a node status response (RFC 1002 §4.2.18)."""

    name = "NBNS NODE_NAME"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        StrFixedLenField("NETBIOS_NAME", b" " * NETBIOS_NAME_LENGTH, NETBIOS_NAME_LENGTH),
        XByteField("SUFFIX", 0),
        XShortField("NAME_FLAGS", NAME_FLAG_ACT),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class NameQueryRequest(Packet):
    """NAME QUERY REQUEST (RFC 1002 §4.2.12)."""

    name = "NBNS name query request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("QUESTION_NAME", NetBIOSName(b"")),
        ShortEnumField("QUESTION_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("QUESTION_CLASS", CLASS_IN, _CLASS_NAMES),
    ]


class NodeStatusRequest(NameQueryRequest):
    """NODE STATUS REQUEST (RFC 1002 §4.2.17), by default for the wildcard name `*`."""

    name = "NBNS node status request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("QUESTION_NAME", _WILDCARD),
        ShortEnumField("QUESTION_TYPE", TYPE_NBSTAT, _TYPE_NAMES),
        ShortEnumField("QUESTION_CLASS", CLASS_IN, _CLASS_NAMES),
    ]


class NameRegistrationRequest(Packet):
    """NAME REGISTRATION REQUEST and NAME OVERWRITE REQUEST & DEMAND (RFC 1002 §4.2.2, §4.2.3)."""

    name = "NBNS name registration request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("QUESTION_NAME", NetBIOSName(b"")),
        ShortEnumField("QUESTION_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("QUESTION_CLASS", CLASS_IN, _CLASS_NAMES),
        RRNameField("RR_NAME", QUESTION_NAME_POINTER),  # type: ignore[arg-type]
        ShortEnumField("RR_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", DEFAULT_TTL),
        ShortField("RDLENGTH", ADDR_ENTRY_LENGTH),
        XShortField("NB_FLAGS", ONT_B),
        IPField("NB_ADDRESS", "0.0.0.0"),
    ]


class NameReleaseRequest(NameRegistrationRequest):
    """NAME RELEASE REQUEST & DEMAND (RFC 1002 §4.2.9); the TTL is zero."""

    name = "NBNS name release request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        *NameRegistrationRequest.fields_desc[:6],
        IntField("TTL", 0),
        *NameRegistrationRequest.fields_desc[7:],
    ]


class NameRefreshRequest(NameRegistrationRequest):
    """NAME REFRESH REQUEST (RFC 1002 §4.2.4), opcode 8 or Microsoft's 9."""

    name = "NBNS name refresh request"


class PositiveNameQueryResponse(Packet):
    """POSITIVE NAME QUERY RESPONSE (RFC 1002 §4.2.13): one ADDR_ENTRY per address."""

    name = "NBNS positive name query response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("RR_NAME", NetBIOSName(b"")),
        ShortEnumField("RR_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", DEFAULT_TTL),
        FieldLenField("RDLENGTH", None, length_of="ADDR_ENTRY"),
        PacketListField("ADDR_ENTRY", [], AddrEntry, length_from=lambda pkt: pkt.RDLENGTH),
    ]


class NegativeNameQueryResponse(PositiveNameQueryResponse):
    """NEGATIVE NAME QUERY RESPONSE (RFC 1002 §4.2.14): type NULL, TTL 0, no RDATA."""

    name = "NBNS negative name query response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("RR_NAME", NetBIOSName(b"")),
        ShortEnumField("RR_TYPE", TYPE_NULL, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", 0),
        FieldLenField("RDLENGTH", None, length_of="ADDR_ENTRY"),
        PacketListField("ADDR_ENTRY", [], AddrEntry, length_from=lambda pkt: pkt.RDLENGTH),
    ]


class NodeStatusResponse(Packet):
    """NODE STATUS RESPONSE (RFC 1002 §4.2.18) with RDLENGTH computed as 18 * NUM_NAMES + 47."""

    name = "NBNS node status response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("RR_NAME", _WILDCARD),
        ShortEnumField("RR_TYPE", TYPE_NBSTAT, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", 0),
        FieldLenField(
            "RDLENGTH",
            None,
            length_of="NODE_NAME",
            adjust=lambda pkt, x: x + NUM_NAMES_LENGTH + STATISTICS_LENGTH,
        ),
        FieldLenField("NUM_NAMES", None, fmt="B", count_of="NODE_NAME"),
        PacketListField("NODE_NAME", [], NodeNameEntry, count_from=lambda pkt: pkt.NUM_NAMES),
        MACField("UNIT_ID", "00:00:00:00:00:00"),
        XStrFixedLenField("STATISTICS", b"", STATISTICS_LENGTH - UNIT_ID_LENGTH),
    ]


class NameRegistrationResponse(Packet):
    """POSITIVE and NEGATIVE NAME REGISTRATION RESPONSE, END-NODE CHALLENGE and NAME CONFLICT
    DEMAND: the RCODE tells them apart (RFC 1002 §4.2.5-4.2.8)."""

    name = "NBNS name registration response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("RR_NAME", NetBIOSName(b"")),
        ShortEnumField("RR_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", 0),
        FieldLenField("RDLENGTH", None, length_of="ADDR_ENTRY"),
        PacketListField("ADDR_ENTRY", [], AddrEntry, length_from=lambda pkt: pkt.RDLENGTH),
    ]


class NameReleaseResponse(NameRegistrationResponse):
    """POSITIVE and NEGATIVE NAME RELEASE RESPONSE (RFC 1002 §4.2.10, §4.2.11)."""

    name = "NBNS name release response"


class WaitForAcknowledgementResponse(Packet):
    """WAIT FOR ACKNOWLEDGEMENT (WACK) RESPONSE (RFC 1002 §4.2.16); RDATA echoes the flags."""

    name = "NBNS WACK response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EncodedNameField("RR_NAME", NetBIOSName(b"")),
        ShortEnumField("RR_TYPE", TYPE_NB, _TYPE_NAMES),
        ShortEnumField("RR_CLASS", CLASS_IN, _CLASS_NAMES),
        IntField("TTL", 0),
        ShortField("RDLENGTH", WACK_RDATA_LENGTH),
        XShortField("RDATA", 0),
    ]


# Building only: dissection goes through NameServiceHeader.guess_payload_class.
bind_top_down(NameServiceHeader, NameQueryRequest, OPCODE=OPCODE_QUERY, QDCOUNT=1)
bind_top_down(NameServiceHeader, NodeStatusRequest, OPCODE=OPCODE_QUERY, QDCOUNT=1)
bind_top_down(
    NameServiceHeader,
    NameRegistrationRequest,
    OPCODE=OPCODE_REGISTRATION,
    RD=1,
    QDCOUNT=1,
    ARCOUNT=1,
)
bind_top_down(NameServiceHeader, NameReleaseRequest, OPCODE=OPCODE_RELEASE, QDCOUNT=1, ARCOUNT=1)
bind_top_down(NameServiceHeader, NameRefreshRequest, OPCODE=OPCODE_REFRESH, QDCOUNT=1, ARCOUNT=1)
bind_top_down(
    NameServiceHeader, PositiveNameQueryResponse, R=1, OPCODE=OPCODE_QUERY, AA=1, RD=1, ANCOUNT=1
)
bind_top_down(
    NameServiceHeader,
    NegativeNameQueryResponse,
    R=1,
    OPCODE=OPCODE_QUERY,
    AA=1,
    RD=1,
    RCODE=NAM_ERR,
    ANCOUNT=1,
)
bind_top_down(NameServiceHeader, NodeStatusResponse, R=1, OPCODE=OPCODE_QUERY, AA=1, ANCOUNT=1)
bind_top_down(
    NameServiceHeader,
    NameRegistrationResponse,
    R=1,
    OPCODE=OPCODE_REGISTRATION,
    AA=1,
    RD=1,
    RA=1,
    ANCOUNT=1,
)
bind_top_down(NameServiceHeader, NameReleaseResponse, R=1, OPCODE=OPCODE_RELEASE, AA=1, ANCOUNT=1)
bind_top_down(
    NameServiceHeader, WaitForAcknowledgementResponse, R=1, OPCODE=OPCODE_WACK, AA=1, ANCOUNT=1
)


_LAYERS: dict[type[NameServicePacket], type[Packet]] = {
    NameQuery: NameQueryRequest,
    NodeStatusQuery: NodeStatusRequest,
    NameRegistration: NameRegistrationRequest,
    NameRelease: NameReleaseRequest,
    NameRefresh: NameRefreshRequest,
    NodeStatus: NodeStatusResponse,
    RegistrationResponse: NameRegistrationResponse,
    ReleaseResponse: NameReleaseResponse,
    WaitForAcknowledgement: WaitForAcknowledgementResponse,
}
"""The layer of each typed packet; a QueryResponse's depends on its RCODE."""


def layer_for(response: bool, opcode: int, rcode: int, record_type: int) -> type[Packet]:
    """The layer for a header and the type of its first question or record (RFC 1002 §4.2)."""
    kind = packet_kind(response, opcode, record_type)
    if kind is QueryResponse:
        return NegativeNameQueryResponse if rcode else PositiveNameQueryResponse
    return _LAYERS[kind]
