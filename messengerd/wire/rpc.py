"""Connectionless DCE/RPC (protocol version 4) for the Messenger's RPC path, as a struct codec:
the 80-byte PDU header and the bodies a msgsvcsend server reads and writes (C706 ch. 12), the
NDR stubs of NetrSendMessage ([MS-MSRP] §3.2.4.1) and of the endpoint mapper's ept_map
(C706 Appendix O), and the protocol towers ept_map carries (C706 Appendix L). PROTOCOL.md §6.

The daemon's runtime reads and writes these bytes; `messengerd.wire.layers.rpc` defines the same
packets with scapy, and the tests prove the two byte for byte equal.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, replace
from uuid import UUID

from messengerd.core.limits import (
    MAX_EPT_TOWER_BYTES,
    MAX_EPT_TOWER_FLOORS,
    MAX_FIELD_BYTES,
    MAX_RPC_REQUEST_BYTES,
    MAX_TEXT_BYTES,
)
from messengerd.wire.errors import WireError

# The header (C706 §12.5.1).

RPC_VERSION = 4
"""rpc_vers of every connectionless PDU (C706 §12.5.1); connection-oriented RPC is version 5."""
HEADER_LENGTH = 80
"""Bytes of the connectionless PDU header (C706 §12.5.1)."""
MAX_BODY_LENGTH = 0xFFFF
"""The header's len field is 16 bits (C706 §12.5.1)."""
_HEADER_FIELDS = "BBBB3sB16s16s16sIIIHHHHHBB"
_HEADER = {True: struct.Struct("<" + _HEADER_FIELDS), False: struct.Struct(">" + _HEADER_FIELDS)}
_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}


class PacketType(enum.IntEnum):
    """ptype of a connectionless PDU (C706 §12.5; "quit" is cl_cancel, "quack" cancel_ack)."""

    REQUEST = 0
    PING = 1
    RESPONSE = 2
    FAULT = 3
    WORKING = 4
    NOCALL = 5
    REJECT = 6
    ACK = 7
    CL_CANCEL = 8
    FACK = 9
    CANCEL_ACK = 10


_PACKET_TYPES = frozenset(int(ptype) for ptype in PacketType)

# flags1 and flags2 (C706 §12.5.1).
PF_LASTFRAG = 0x02
"""The last fragment of a fragmented body."""
PF_FRAG = 0x04
"""The PDU is one fragment of a fragmented body."""
PF_NOFACK = 0x08
"""The receiver need not answer this fragment with a fack."""
PF_MAYBE = 0x10
"""A `maybe` call: the client wants no response at all."""
PF_IDEMPOTENT = 0x20
"""An idempotent call: running it twice does no harm."""
PF_BROADCAST = 0x40
"""A broadcast call: sent to every host; the client takes the first response."""
PF2_CANCEL_PENDING = 0x02
"""(server to client) a cancel was pending when the call ended."""

# Data representation, drep[0] and drep[1] (C706 ch. 14, the format label).
DREP_BIG_ENDIAN = 0x0
DREP_LITTLE_ENDIAN = 0x1
DREP_ASCII = 0x0
DREP_EBCDIC = 0x1
DREP_IEEE = 0x0
_FLOAT_NAMES = {0: "IEEE", 1: "VAX", 2: "Cray", 3: "IBM"}

NIL_UUID = UUID(int=0)
NO_HINT = 0xFFFF
"""ihint/ahint meaning "no hint" (C706 §12.5.1)."""

# Reject and fault statuses (C706 Appendix E; names as Wireshark's DCE/RPC dissector gives them).
nca_rpc_version_mismatch = 0x1C000008
nca_unspec_reject = 0x1C000009
nca_s_fault_remote_no_memory = 0x1C00001B
nca_op_rng_error = 0x1C010002
nca_unk_if = 0x1C010003
nca_wrong_boot_time = 0x1C010006
nca_proto_error = 0x1C01000B
nca_s_fault_ndr = 0x000006F7
"""The fault Windows answers to stub data it cannot unmarshal (RPC_X_BAD_STUB_DATA, 1783)."""

STATUS_NAMES = {
    value: name
    for name, value in dict(globals()).items()
    if name.startswith(("nca_", "ncs_")) and isinstance(value, int)
}


@dataclass(frozen=True)
class Header:
    """The 80-byte header of a connectionless PDU, in C706 §12.5.1's field order and names.

    drep is held as `little_endian`: the only character and float formats read are ASCII and
    IEEE. serial_hi and serial_lo are one 16-bit `serial`; `length` is the header's len.
    """

    ptype: int
    flags1: int = 0
    flags2: int = 0
    little_endian: bool = True
    serial: int = 0
    object: UUID = NIL_UUID
    if_id: UUID = NIL_UUID
    act_id: UUID = NIL_UUID
    server_boot: int = 0
    if_vers: int = 0
    seqnum: int = 0
    opnum: int = 0
    ihint: int = NO_HINT
    ahint: int = NO_HINT
    length: int = 0
    fragnum: int = 0
    auth_proto: int = 0

    def has(self, flag: int) -> bool:
        """True when flags1 carries `flag` (PF_FRAG, PF_NOFACK, ...)."""
        return bool(self.flags1 & flag)

    def encode(self) -> bytes:
        """The header's 80 bytes in its own byte order."""
        little = self.little_endian
        drep = bytes(((DREP_LITTLE_ENDIAN if little else DREP_BIG_ENDIAN) << 4, DREP_IEEE, 0))
        return _HEADER[little].pack(
            RPC_VERSION,
            self.ptype,
            self.flags1,
            self.flags2,
            drep,
            self.serial >> 8,
            _uuid_bytes(self.object, little),
            _uuid_bytes(self.if_id, little),
            _uuid_bytes(self.act_id, little),
            self.server_boot,
            self.if_vers,
            self.seqnum,
            self.opnum,
            self.ihint,
            self.ahint,
            self.length,
            self.fragnum,
            self.auth_proto,
            self.serial & 0xFF,
        )


@dataclass(frozen=True)
class PDU:
    """One connectionless PDU: its header and the `len` bytes of body after it."""

    header: Header
    body: bytes


def parse_pdu(data: bytes) -> PDU:
    """Read one datagram's PDU (C706 §12.5.1).

    Raises WireError for a short or truncated datagram, a version other than 4, an unknown
    ptype, and a drep this codec does not read: big- and little-endian integers are read,
    EBCDIC characters and non-IEEE floats are refused. Bytes after the body are ignored.
    """
    if len(data) < HEADER_LENGTH:
        raise WireError(f"{len(data)} bytes is shorter than the {HEADER_LENGTH}-byte header")
    if data[0] != RPC_VERSION:
        raise WireError(f"rpc_vers {data[0]} is not connectionless RPC ({RPC_VERSION})")
    little = _drep_is_little_endian(data[4:7])
    fields = _HEADER[little].unpack_from(data)
    ptype = fields[1]
    if ptype not in _PACKET_TYPES:
        raise WireError(f"ptype {ptype} is no connectionless PDU type")
    header = Header(
        ptype=ptype,
        flags1=fields[2],
        flags2=fields[3],
        little_endian=little,
        serial=fields[5] << 8 | fields[18],
        object=_uuid(fields[6], little),
        if_id=_uuid(fields[7], little),
        act_id=_uuid(fields[8], little),
        server_boot=fields[9],
        if_vers=fields[10],
        seqnum=fields[11],
        opnum=fields[12],
        ihint=fields[13],
        ahint=fields[14],
        length=fields[15],
        fragnum=fields[16],
        auth_proto=fields[17],
    )
    end = HEADER_LENGTH + header.length
    if end > len(data):
        raise WireError(f"len {header.length} runs past the {len(data) - HEADER_LENGTH}-byte body")
    return PDU(header, bytes(data[HEADER_LENGTH:end]))


def build_pdu(header: Header, body: bytes = b"") -> bytes:
    """`header` with its len set to `body`'s, then `body`."""
    if len(body) > MAX_BODY_LENGTH:
        raise WireError(f"a {len(body)}-byte body does not fit the 16-bit len")
    return replace(header, length=len(body)).encode() + body


def _drep_is_little_endian(drep: bytes) -> bool:
    integer, character, floating = drep[0] >> 4, drep[0] & 0x0F, drep[1]
    if character != DREP_ASCII:
        name = "EBCDIC" if character == DREP_EBCDIC else f"format {character}"
        raise WireError(f"{name} characters are not supported (drep says so); only ASCII is")
    if floating != DREP_IEEE:
        name = _FLOAT_NAMES.get(floating, f"format {floating}")
        raise WireError(f"{name} floating point is not supported (drep); only IEEE is")
    if integer not in (DREP_BIG_ENDIAN, DREP_LITTLE_ENDIAN):
        raise WireError(f"integer representation {integer} in drep is neither byte order")
    return integer == DREP_LITTLE_ENDIAN


def _uuid_bytes(value: UUID, little: bool) -> bytes:
    """A uuid_t in NDR: its first three fields in the sender's byte order (C706 Appendix A)."""
    return value.bytes_le if little else value.bytes


def _uuid(raw: bytes, little: bool) -> UUID:
    return UUID(bytes_le=raw) if little else UUID(bytes=raw)


def interface_version(major: int, minor: int) -> int:
    """if_vers as the header carries it: the major version in the low 16 bits."""
    return minor << 16 | major


# The bodies of the PDUs that are not calls (C706 §12.5.3).

ERROR_BODY_LENGTH = 4
"""A fault or reject body is one 32-bit status (C706 §12.5.3)."""


def build_status_body(status: int, *, little_endian: bool = True) -> bytes:
    """The body of a fault or reject: the status code."""
    return _U32[little_endian].pack(status)


def parse_status_body(body: bytes, *, little_endian: bool = True) -> int:
    """The status of a fault or reject body."""
    if len(body) < ERROR_BODY_LENGTH:
        raise WireError(f"a {len(body)}-byte body holds no 4-byte status")
    return _U32[little_endian].unpack_from(body)[0]


FACK_BODY_VERSION = 1
"""vers of a fack body (the DCE reference's RPC_C_DG_FACKPKT_BODY_VERS)."""
FACK_FIXED_LENGTH = 16
"""Bytes of a fack body before its selective-ack words (C706 §12.5.3.4)."""
_FACK = {True: struct.Struct("<BBHIIHH"), False: struct.Struct(">BBHIIHH")}
MAX_SELACK_WORDS = 4
"""Selective-ack words read: each covers 32 fragments, far past MAX_RPC_FRAGMENTS."""


@dataclass(frozen=True)
class FackBody:
    """The body of a fack, or of a nocall that says which fragments arrived (C706 §12.5.3.4).

    The header's fragnum is the last fragment received in order; bit i of the `selack` words
    (32 to a word, low bit first) stands for fragment fragnum + 1 + i, as the DCE reference
    counts them, so bit 0 (the first missing fragment) is always clear.
    """

    window_size: int
    max_tsdu: int
    max_frag_size: int
    serial_num: int
    selack: tuple[int, ...] = ()
    vers: int = FACK_BODY_VERSION

    def encode(self, *, little_endian: bool = True) -> bytes:
        """The body; with no selective acks it keeps one zero word, as the DCE reference
        sends a 20-byte body whatever selack_len says."""
        words = self.selack or (0,)
        fixed = _FACK[little_endian].pack(
            self.vers,
            0,
            self.window_size,
            self.max_tsdu,
            self.max_frag_size,
            self.serial_num,
            len(self.selack),
        )
        return fixed + b"".join(_U32[little_endian].pack(word) for word in words)


def parse_fack_body(body: bytes, *, little_endian: bool = True) -> FackBody:
    """A fack body; raises WireError when it is short of its fixed part or its selack words."""
    if len(body) < FACK_FIXED_LENGTH:
        raise WireError(f"a {len(body)}-byte fack body is shorter than {FACK_FIXED_LENGTH}")
    vers, _pad, window, tsdu, frag, serial, count = _FACK[little_endian].unpack_from(body)
    if count > MAX_SELACK_WORDS:
        raise WireError(f"selack_len {count} is over {MAX_SELACK_WORDS}")
    end = FACK_FIXED_LENGTH + 4 * count
    if end > len(body):
        raise WireError(f"selack_len {count} runs past the {len(body)}-byte fack body")
    u32 = _U32[little_endian]
    selack = tuple(u32.unpack_from(body, offset)[0] for offset in range(16, end, 4))
    return FackBody(window, tsdu, frag, serial, selack, vers)


QUIT_BODY_LENGTH = 8
"""A cancel request's body: vers and cancel_id, 32 bits each (C706 §12.5.3)."""
QUACK_BODY_LENGTH = 9
"""A cancel_ack's body: vers, cancel_id and server_is_accepting (C706 §12.5.3)."""
CANCEL_BODY_VERSION = 0


def parse_quit_body(body: bytes, *, little_endian: bool = True) -> int | None:
    """The cancel_id of a cancel request, or None for an orphan quit (no body)."""
    if not body:
        return None
    if len(body) < QUIT_BODY_LENGTH:
        raise WireError(f"a {len(body)}-byte cancel body is shorter than {QUIT_BODY_LENGTH}")
    return _U32[little_endian].unpack_from(body, 4)[0]


def build_quack_body(cancel_id: int, *, accepting: bool, little_endian: bool = True) -> bytes:
    """The body of a cancel_ack answering cancel `cancel_id`."""
    u32 = _U32[little_endian]
    return u32.pack(CANCEL_BODY_VERSION) + u32.pack(cancel_id) + bytes((int(accepting),))


# Replies a server builds from the header of what it answers.


def reply_header(request: Header, ptype: PacketType, *, server_boot: int) -> Header:
    """A server's reply header for `request` (the DCE reference's rpc__dg_xmit_hdr_only_pkt):
    the same call (object, interface, activity, seqnum, opnum, hints, fragnum), our own drep
    (little-endian ASCII IEEE), no flags, our boot time."""
    return replace(
        request,
        ptype=ptype,
        flags1=0,
        flags2=0,
        little_endian=True,
        serial=0,
        server_boot=server_boot,
        length=0,
        auth_proto=0,
    )


def build_response(request: Header, stub: bytes, *, server_boot: int) -> bytes:
    """The single-fragment response carrying `stub` (fragnum 0)."""
    header = replace(reply_header(request, PacketType.RESPONSE, server_boot=server_boot), fragnum=0)
    return build_pdu(header, stub)


def build_error(request: Header, ptype: PacketType, status: int, *, server_boot: int) -> bytes:
    """A fault or reject with `status` (C706 Appendix E)."""
    if ptype not in (PacketType.FAULT, PacketType.REJECT):
        raise ValueError(f"{ptype.name} carries no status")
    return build_pdu(
        reply_header(request, ptype, server_boot=server_boot), build_status_body(status)
    )


def build_header_only(request: Header, ptype: PacketType, *, server_boot: int) -> bytes:
    """A working, nocall, or orphan cancel_ack: the header and no body."""
    return build_pdu(reply_header(request, ptype, server_boot=server_boot))


def build_fack(
    request: Header, ptype: PacketType, body: FackBody, *, fragnum: int, server_boot: int
) -> bytes:
    """A fack (or a nocall with a fack body) whose fragnum is the last fragment received in
    order; 0xFFFF when fragment 0 is missing (the DCE reference's next_fragnum - 1)."""
    header = replace(
        reply_header(request, ptype, server_boot=server_boot), fragnum=fragnum & 0xFFFF
    )
    return build_pdu(header, body.encode())


# NDR (C706 ch. 14): conformant varying strings.

NDR_STRING_HEADER = 12
"""MaximumCount, Offset and ActualCount before a conformant varying string (C706 ch. 14)."""


class FieldTooLong(WireError):
    """A well-formed string longer than this receiver takes (MAX_FIELD_BYTES, MAX_TEXT_BYTES)."""


def _align(offset: int, boundary: int = 4) -> int:
    return offset + (-offset % boundary)


def read_ndr_string(
    stub: bytes, offset: int, *, little_endian: bool, label: str, limit: int
) -> tuple[bytes, int]:
    """The [string] char array at `offset` (aligned to 4 first) without its NUL, and the
    offset after it.

    MS03-043 overflowed Windows with exactly this request's Text, so every count is checked:
    Offset 0, 1 <= ActualCount <= MaximumCount <= MAX_RPC_REQUEST_BYTES, the bytes present,
    one NUL and only at the end. A string past `limit` bytes raises FieldTooLong.
    """
    start = _align(offset)
    if start + NDR_STRING_HEADER > len(stub):
        raise WireError(f"{label}: stub ends before its string header")
    u32 = _U32[little_endian]
    max_count = u32.unpack_from(stub, start)[0]
    first = u32.unpack_from(stub, start + 4)[0]
    actual = u32.unpack_from(stub, start + 8)[0]
    if first != 0:
        raise WireError(f"{label}: Offset is {first}, not 0")
    if max_count > MAX_RPC_REQUEST_BYTES:
        raise WireError(f"{label}: MaximumCount {max_count} is over {MAX_RPC_REQUEST_BYTES}")
    if actual > max_count:
        raise WireError(f"{label}: ActualCount {actual} is over MaximumCount {max_count}")
    if actual == 0:
        raise WireError(f"{label}: ActualCount 0 leaves no room for the NUL")
    data_start = start + NDR_STRING_HEADER
    data_end = data_start + actual
    if data_end > len(stub):
        raise WireError(f"{label}: {actual} characters run past the stub's end")
    value = stub[data_start : data_end - 1]
    if stub[data_end - 1] != 0:
        raise WireError(f"{label}: the string does not end in a NUL")
    if 0 in value:
        raise WireError(f"{label}: a NUL inside the string")
    if len(value) > limit:
        raise FieldTooLong(f"{label} is {len(value)} bytes; at most {limit}")
    return bytes(value), data_end


def write_ndr_string(value: bytes, offset: int, *, little_endian: bool = True) -> bytes:
    """`value` as a [string] char array at stream position `offset`: the padding to 4 first,
    then MaximumCount = ActualCount = len + 1, Offset 0, the bytes and the NUL."""
    if 0 in value:
        raise WireError("a [string] cannot hold a NUL")
    count = len(value) + 1
    u32 = _U32[little_endian]
    pad = bytes(-offset % 4)
    return pad + u32.pack(count) + u32.pack(0) + u32.pack(count) + value + b"\x00"


# NetrSendMessage ([MS-MSRP] §3.2.4.1).

MSGSVCSEND_UUID = UUID("5a7b91f8-ff00-11d0-a9b2-00c04fb6e6fc")
"""The msgsvcsend interface ([MS-MSRP] §1.9)."""
MSGSVCSEND_VERSION = (1, 0)
OPNUM_NETR_SEND_MESSAGE = 0


@dataclass(frozen=True)
class NetrSendMessageRequest:
    """NetrSendMessage's [in] parameters: From, To, Text, OEM bytes without their NULs.

    Each is a top-level `[in, string] LPSTR`: a reference pointer, which NDR writes as its
    referent alone (C706 ch. 14, top-level reference pointers), so no referent id precedes
    the strings. Wireshark's messenger dissector (NDR_POINTER_REF), scapy's generated
    `[in, string]` parameters and the MS03-043 Snort rule (sid 2257) read it the same way.
    """

    sender: bytes
    recipient: bytes
    text: bytes


def parse_netr_send_message_request(
    stub: bytes, *, little_endian: bool = True
) -> NetrSendMessageRequest:
    """From, To and Text from the request stub.

    Raises WireError for malformed NDR and FieldTooLong for a From or To over MAX_FIELD_BYTES
    or a Text over MAX_TEXT_BYTES. Bytes after Text are ignored (NDR pads a stub to 8).
    """
    position = 0
    values = []
    for label, limit in (
        ("From", MAX_FIELD_BYTES),
        ("To", MAX_FIELD_BYTES),
        ("Text", MAX_TEXT_BYTES),
    ):
        value, position = read_ndr_string(
            stub, position, little_endian=little_endian, label=label, limit=limit
        )
        values.append(value)
    return NetrSendMessageRequest(*values)


def build_netr_send_message_request(
    sender: bytes, recipient: bytes, text: bytes, *, little_endian: bool = True
) -> bytes:
    """The request stub a MIDL client writes: three strings, no padding after the last."""
    stub = b""
    for value in (sender, recipient, text):
        stub += write_ndr_string(value, len(stub), little_endian=little_endian)
    return stub


def build_netr_send_message_response(status: int, *, little_endian: bool = True) -> bytes:
    """The response stub: the error_status_t NetrSendMessage returns."""
    return _U32[little_endian].pack(status)


def parse_netr_send_message_response(stub: bytes, *, little_endian: bool = True) -> int:
    """The status in a response stub."""
    if len(stub) < 4:
        raise WireError(f"a {len(stub)}-byte response stub holds no status")
    return _U32[little_endian].unpack_from(stub)[0]


# The client side: a sender's request and what it reads back.

MUST_RECV_FRAG_SIZE = 1464
"""The fragment every connectionless implementation must take (the DCE reference's
RPC_C_DG_MUST_RECV_FRAG_SIZE): a sender that knows nothing of its peer cuts to this."""


def build_request(
    header: Header, stub: bytes, *, max_fragment_body: int = MUST_RECV_FRAG_SIZE - HEADER_LENGTH
) -> list[bytes]:
    """The datagrams of a request carrying `stub`: one, or fragments of `max_fragment_body`
    bytes with FRAG on each, LASTFRAG on the last and NOFACK on all but the last (so the
    server acknowledges the burst once, as [MS-RPCE]'s sliding window sends them)."""
    if max_fragment_body < 8:
        raise ValueError("fragments carry at least 8 bytes")
    if len(stub) <= max_fragment_body:
        return [build_pdu(replace(header, fragnum=0), stub)]
    pieces = [stub[i : i + max_fragment_body] for i in range(0, len(stub), max_fragment_body)]
    datagrams = []
    for fragnum, piece in enumerate(pieces):
        last = fragnum == len(pieces) - 1
        flags = header.flags1 | PF_FRAG | (PF_LASTFRAG if last else PF_NOFACK)
        fragment = replace(header, flags1=flags, fragnum=fragnum, serial=fragnum)
        datagrams.append(build_pdu(fragment, piece))
    return datagrams


def build_netr_send_message_call(
    sender: bytes,
    recipient: bytes,
    text: bytes,
    *,
    act_id: UUID,
    seqnum: int = 0,
    flags1: int = PF_IDEMPOTENT,
    server_boot: int = 0,
    max_fragment_body: int = MUST_RECV_FRAG_SIZE - HEADER_LENGTH,
) -> list[bytes]:
    """The datagrams of one NetrSendMessage call from a sender ([MS-MSRP] §3.2.4.1)."""
    header = Header(
        ptype=PacketType.REQUEST,
        flags1=flags1,
        if_id=MSGSVCSEND_UUID,
        act_id=act_id,
        server_boot=server_boot,
        if_vers=interface_version(*MSGSVCSEND_VERSION),
        seqnum=seqnum,
        opnum=OPNUM_NETR_SEND_MESSAGE,
    )
    stub = build_netr_send_message_request(sender, recipient, text)
    return build_request(header, stub, max_fragment_body=max_fragment_body)


@dataclass(frozen=True)
class CallReply:
    """What a server answered a call: a response's status, a fault's or reject's status, or
    None for the PDUs that carry none (working, nocall, fack, cancel_ack)."""

    ptype: PacketType
    status: int | None
    server_boot: int


def parse_call_reply(data: bytes, *, act_id: UUID, seqnum: int) -> CallReply:
    """Read a server's datagram for the call (`act_id`, `seqnum`) a sender made.

    Raises WireError for malformed bytes, another call's PDU, or a client-to-server PDU.
    """
    pdu = parse_pdu(data)
    header, little = pdu.header, pdu.header.little_endian
    if header.act_id != act_id or header.seqnum != seqnum:
        raise WireError(f"a PDU for activity {header.act_id} call {header.seqnum}, not ours")
    ptype = PacketType(header.ptype)
    if ptype in (PacketType.REQUEST, PacketType.PING, PacketType.ACK, PacketType.CL_CANCEL):
        raise WireError(f"a {ptype.name} comes from a client, not a server")
    status = None
    if ptype is PacketType.RESPONSE:
        status = parse_netr_send_message_response(pdu.body, little_endian=little)
    elif ptype in (PacketType.FAULT, PacketType.REJECT):
        status = parse_status_body(pdu.body, little_endian=little)
    return CallReply(ptype, status, header.server_boot)


# The endpoint mapper (C706 Appendix O) and protocol towers (C706 Appendix L).

EPT_UUID = UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
"""The endpoint mapper interface, ept v3.0, on UDP and TCP 135 (C706 Appendix O)."""
EPT_VERSION = (3, 0)
OPNUM_EPT_MAP = 3
NDR_UUID = UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")
"""The NDR transfer syntax, version 2.0 (C706 ch. 14)."""
NDR_VERSION = (2, 0)
EPT_S_NOT_REGISTERED = 0x16C9A0D6
"""ept_map's status when no endpoint matches the tower (C706 Appendix O)."""

PROTOCOL_UUID = 0x0D
"""A tower floor naming an interface or transfer syntax by UUID (C706 Appendix L)."""
PROTOCOL_RPC_CL = 0x0A
"""The floor of the connectionless RPC protocol (ncadg)."""
PROTOCOL_RPC_CO = 0x0B
"""The floor of the connection-oriented RPC protocol (ncacn)."""
PROTOCOL_UDP = 0x08
"""The floor holding a UDP port, big-endian."""
PROTOCOL_TCP = 0x07
PROTOCOL_IP = 0x09
"""The floor holding an IPv4 address, big-endian."""

CONTEXT_HANDLE_LENGTH = 20
"""An NDR context handle (ndr_context_handle): attributes (4) and a UUID (16)."""
NULL_CONTEXT_HANDLE = bytes(CONTEXT_HANDLE_LENGTH)


@dataclass(frozen=True)
class TowerFloor:
    """One floor: its left-hand side (a protocol identifier, then data) and right-hand side."""

    lhs: bytes
    rhs: bytes

    @property
    def protocol(self) -> int:
        """The floor's protocol identifier, the first byte of its left-hand side."""
        return self.lhs[0]


def uuid_floor(value: UUID, version: tuple[int, int]) -> TowerFloor:
    """A floor naming an interface or transfer syntax: UUID and major version on the left,
    minor version on the right, all little-endian (C706 Appendix L)."""
    major, minor = version
    return TowerFloor(
        bytes((PROTOCOL_UUID,)) + value.bytes_le + major.to_bytes(2, "little"),
        minor.to_bytes(2, "little"),
    )


def parse_uuid_floor(floor: TowerFloor) -> tuple[UUID, tuple[int, int]] | None:
    """The UUID and version a UUID floor names; None for another kind of floor."""
    if floor.protocol != PROTOCOL_UUID or len(floor.lhs) != 19 or len(floor.rhs) != 2:
        return None
    major = int.from_bytes(floor.lhs[17:19], "little")
    return UUID(bytes_le=floor.lhs[1:17]), (major, int.from_bytes(floor.rhs, "little"))


def udp_tower(interface: UUID, version: tuple[int, int], port: int, address: str) -> bytes:
    """The tower of `interface` over ncadg_ip_udp at `address`:`port`: its UUID, NDR, RPC
    connectionless, UDP and IP floors (C706 Appendix L)."""
    return build_tower(
        (
            uuid_floor(interface, version),
            uuid_floor(NDR_UUID, NDR_VERSION),
            TowerFloor(bytes((PROTOCOL_RPC_CL,)), (0).to_bytes(2, "little")),
            TowerFloor(bytes((PROTOCOL_UDP,)), port.to_bytes(2, "big")),
            TowerFloor(bytes((PROTOCOL_IP,)), ipaddress.IPv4Address(address).packed),
        )
    )


def udp_port_of(tower: bytes) -> int | None:
    """The UDP port an ncadg_ip_udp tower names (its 0x08 floor), or None: what a sender reads
    from ept_map's answer to find msgsvcsend."""
    for floor in parse_tower(tower):
        if floor.protocol == PROTOCOL_UDP and len(floor.rhs) == 2:
            return int.from_bytes(floor.rhs, "big")
    return None


def build_ept_map_call(
    interface: UUID, version: tuple[int, int], *, act_id: UUID, seqnum: int = 0
) -> bytes:
    """A sender's ept_map request for `interface` over ncadg_ip_udp, as one datagram to UDP
    135: the tower names port 0 and address 0.0.0.0, as Windows clients send it."""
    header = Header(
        ptype=PacketType.REQUEST,
        flags1=PF_IDEMPOTENT,
        if_id=EPT_UUID,
        act_id=act_id,
        if_vers=interface_version(*EPT_VERSION),
        seqnum=seqnum,
        opnum=OPNUM_EPT_MAP,
    )
    return build_pdu(header, build_ept_map_request(udp_tower(interface, version, 0, "0.0.0.0")))


def build_tower(floors: tuple[TowerFloor, ...] | list[TowerFloor]) -> bytes:
    """floor_count, then per floor lhs_length, lhs, rhs_length, rhs; all lengths little-endian."""
    octets = len(floors).to_bytes(2, "little")
    for floor in floors:
        octets += len(floor.lhs).to_bytes(2, "little") + floor.lhs
        octets += len(floor.rhs).to_bytes(2, "little") + floor.rhs
    return octets


def parse_tower(octets: bytes) -> tuple[TowerFloor, ...]:
    """The floors of a tower octet string; raises WireError when it is malformed."""
    if len(octets) < 2:
        raise WireError("a tower shorter than its floor count")
    count = int.from_bytes(octets[:2], "little")
    if count > MAX_EPT_TOWER_FLOORS:
        raise WireError(f"a tower of {count} floors; at most {MAX_EPT_TOWER_FLOORS}")
    position, floors = 2, []
    for number in range(1, count + 1):
        sides = []
        for side in ("lhs", "rhs"):
            if position + 2 > len(octets):
                raise WireError(f"floor {number} ends before its {side} length")
            length = int.from_bytes(octets[position : position + 2], "little")
            position += 2
            if position + length > len(octets):
                raise WireError(f"floor {number}'s {side} runs past the tower")
            sides.append(octets[position : position + length])
            position += length
        if not sides[0]:
            raise WireError(f"floor {number} has no protocol identifier")
        floors.append(TowerFloor(sides[0], sides[1]))
    return tuple(floors)


@dataclass(frozen=True)
class EptMapRequest:
    """ept_map's [in] parameters (C706 Appendix O): object, map_tower, entry_handle, max_towers.

    `object` and `map_tower` are unique pointers: None when their referent id is 0.
    """

    object: UUID | None
    map_tower: bytes | None
    entry_handle: bytes
    max_towers: int


def parse_ept_map_request(stub: bytes, *, little_endian: bool = True) -> EptMapRequest:
    """ept_map's request stub; raises WireError for malformed NDR or a tower over
    MAX_EPT_TOWER_BYTES."""
    reader = _Reader(stub, little_endian)
    obj = None
    if reader.u32("object pointer"):
        obj = _uuid(reader.take(16, "object"), little_endian)
    tower = None
    if reader.u32("map_tower pointer"):
        # twr_t is a conformant structure: its array's MaximumCount comes first (C706 ch. 14).
        max_count = reader.u32("map_tower MaximumCount")
        length = reader.u32("tower_length")
        if length > MAX_EPT_TOWER_BYTES:
            raise WireError(f"tower_length {length} is over {MAX_EPT_TOWER_BYTES}")
        if length != max_count:
            raise WireError(f"tower_length {length} is not its MaximumCount {max_count}")
        tower = reader.take(length, "tower_octet_string")
    handle = reader.take(CONTEXT_HANDLE_LENGTH, "entry_handle")
    max_towers = reader.u32("max_towers")
    return EptMapRequest(obj, tower, handle, max_towers)


def build_ept_map_request(
    map_tower: bytes,
    *,
    object: UUID | None = NIL_UUID,
    entry_handle: bytes = NULL_CONTEXT_HANDLE,
    max_towers: int = 4,
    little_endian: bool = True,
) -> bytes:
    """ept_map's request stub as a Windows client writes it: referent ids 1 and 2."""
    writer = _Writer(little_endian)
    writer.u32(0 if object is None else 1)
    if object is not None:
        writer.raw(_uuid_bytes(object, little_endian))
    writer.u32(2)
    writer.twr(map_tower)
    writer.raw(entry_handle, align=4)
    writer.u32(max_towers)
    return writer.bytes()


@dataclass(frozen=True)
class EptMapResponse:
    """ept_map's [out] parameters: entry_handle, the towers found, and status."""

    entry_handle: bytes
    towers: tuple[bytes, ...]
    status: int


TOWER_REFERENT_ID = 3
"""The referent id written for each tower pointer in an ept_map answer (any non-zero id)."""


def build_ept_map_response(
    towers: tuple[bytes, ...] | list[bytes],
    *,
    max_towers: int,
    status: int = 0,
    entry_handle: bytes = NULL_CONTEXT_HANDLE,
    little_endian: bool = True,
) -> bytes:
    """ept_map's response stub: entry_handle, num_towers, the towers as a conformant varying
    array of pointers (MaximumCount max_towers, ActualCount num_towers) whose referents
    follow it, then status."""
    if len(towers) > max_towers:
        raise ValueError(f"{len(towers)} towers do not fit max_towers {max_towers}")
    writer = _Writer(little_endian)
    writer.raw(entry_handle)
    writer.u32(len(towers))
    writer.u32(max_towers)
    writer.u32(0)
    writer.u32(len(towers))
    for _ in towers:
        writer.u32(TOWER_REFERENT_ID)
    for tower in towers:
        writer.twr(tower)
    writer.u32(status)
    return writer.bytes()


def parse_ept_map_response(stub: bytes, *, little_endian: bool = True) -> EptMapResponse:
    """ept_map's response stub, as a sender reads it to find msgsvcsend's port."""
    reader = _Reader(stub, little_endian)
    handle = reader.take(CONTEXT_HANDLE_LENGTH, "entry_handle")
    num_towers = reader.u32("num_towers")
    max_count = reader.u32("towers MaximumCount")
    offset = reader.u32("towers Offset")
    actual = reader.u32("towers ActualCount")
    if offset != 0 or actual > max_count or actual != num_towers:
        raise WireError(f"towers array {max_count}/{offset}/{actual} for {num_towers} towers")
    if actual > MAX_EPT_TOWER_FLOORS:
        raise WireError(f"{actual} towers; at most {MAX_EPT_TOWER_FLOORS}")
    referents = [reader.u32("tower pointer") for _ in range(actual)]
    towers = []
    for referent in referents:
        if not referent:
            continue
        max_count = reader.u32("tower MaximumCount")
        length = reader.u32("tower_length")
        if length > MAX_EPT_TOWER_BYTES or length != max_count:
            raise WireError(f"tower_length {length} with MaximumCount {max_count}")
        towers.append(reader.take(length, "tower_octet_string"))
    status = reader.u32("status")
    return EptMapResponse(handle, tuple(towers), status)


class _Reader:
    """Reads NDR primitives from a stub, aligning each to its size (C706 ch. 14)."""

    def __init__(self, stub: bytes, little_endian: bool) -> None:
        self._stub = stub
        self._u32 = _U32[little_endian]
        self._position = 0

    def u32(self, label: str) -> int:
        self._position = _align(self._position)
        return self._u32.unpack(self.take(4, label))[0]

    def take(self, count: int, label: str) -> bytes:
        end = self._position + count
        if end > len(self._stub):
            raise WireError(f"stub ends inside {label}")
        value, self._position = self._stub[self._position : end], end
        return bytes(value)


class _Writer:
    """Writes NDR primitives into a stub, padding each to its alignment with zeros."""

    def __init__(self, little_endian: bool) -> None:
        self._u32 = _U32[little_endian]
        self._stub = bytearray()

    def u32(self, value: int) -> None:
        self.raw(self._u32.pack(value), align=4)

    def raw(self, data: bytes, *, align: int = 1) -> None:
        self._stub += bytes(-len(self._stub) % align) + data

    def twr(self, tower: bytes) -> None:
        """A twr_t referent: MaximumCount, tower_length, the octets (C706 Appendix L)."""
        self.u32(len(tower))
        self.u32(len(tower))
        self.raw(tower)

    def bytes(self) -> bytes:
        return bytes(self._stub)
