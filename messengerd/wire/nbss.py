"""NetBIOS session service packets scapy lacks, and the frames a receiver sends (RFC 1002 §4.3).

scapy's `NBTSession` is the 4-byte header; the bodies below bind under it by TYPE, so
`NBTSession(frame)` dissects a whole session request, negative response or retarget response.
The frames a receiver sends on every session, and the SESSION REQUEST it reads, are built and
read with struct (`parse_session_request`), byte for byte what these layers give.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.compat import raw
from scapy.fields import ByteEnumField, Field, IPField, ShortField
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import _SMBGeneric
from scapy.packet import Packet, bind_layers, split_layers

# Imported for its bindings: a SESSION MESSAGE then dissects down to the message command body.
from messengerd.wire import smb  # noqa: F401
from messengerd.wire.errors import WireError
from messengerd.wire.names import (
    SERVER_SUFFIX,
    WORKSTATION_SUFFIX,
    NetBIOSName,
    decode_first_level,
)

# Session packet types (RFC 1002 §4.3.1).
SESSION_MESSAGE = 0x00
SESSION_REQUEST = 0x81
POSITIVE_SESSION_RESPONSE = 0x82
NEGATIVE_SESSION_RESPONSE = 0x83
RETARGET_SESSION_RESPONSE = 0x84
SESSION_KEEP_ALIVE = 0x85

SESSION_PACKET_TYPES = {
    SESSION_MESSAGE: "SESSION MESSAGE",
    SESSION_REQUEST: "SESSION REQUEST",
    POSITIVE_SESSION_RESPONSE: "POSITIVE SESSION RESPONSE",
    NEGATIVE_SESSION_RESPONSE: "NEGATIVE SESSION RESPONSE",
    RETARGET_SESSION_RESPONSE: "RETARGET SESSION RESPONSE",
    SESSION_KEEP_ALIVE: "SESSION KEEP ALIVE",
}

# Negative session response error codes (RFC 1002 §4.3.4).
NOT_LISTENING_ON_CALLED_NAME = 0x80
NOT_LISTENING_FOR_CALLING_NAME = 0x81
CALLED_NAME_NOT_PRESENT = 0x82
CALLED_NAME_PRESENT_INSUFFICIENT_RESOURCES = 0x83
UNSPECIFIED_ERROR = 0x8F

NEGATIVE_RESPONSE_ERRORS = {
    NOT_LISTENING_ON_CALLED_NAME: "Not listening on called name",
    NOT_LISTENING_FOR_CALLING_NAME: "Not listening for calling name",
    CALLED_NAME_NOT_PRESENT: "Called name not present",
    CALLED_NAME_PRESENT_INSUFFICIENT_RESOURCES: "Called name present, but insufficient resources",
    UNSPECIFIED_ERROR: "Unspecified error",
}

NBSS_HEADER_LENGTH = 4
"""TYPE(1) FLAGS(1) LENGTH(2) (RFC 1002 §4.3.1)."""
_NBSS_HEADER = struct.Struct("!BBH")
"""TYPE, FLAGS (bit E: LENGTH's 17th bit), the low 16 bits of LENGTH (RFC 1002 §4.3.1)."""
LENGTH_EXTENSION = 0x01
"""The FLAGS bit E: the 17th, most significant bit of LENGTH (RFC 1002 §4.3.1)."""
RESERVED_FLAGS = 0xFE
"""FLAGS bits other than E; the RFC says they are zero."""
MAX_NBSS_LENGTH = 0x1FFFF
"""LENGTH is 17 bits (RFC 1002 §4.3.1)."""
NBSS_PORT = 139
"""The session service port (RFC 1002 §4.3), the default in a RETARGET response."""


class FirstLevelNameField(Field[NetBIOSName, bytes]):
    """A first-level encoded NetBIOS name with its scope, held as a NetBIOSName (RFC 1001 §14.1)."""

    __slots__: list[str] = []

    def __init__(self, name: str, default: NetBIOSName) -> None:
        Field.__init__(self, name, default)

    def i2m(self, pkt: Packet | None, x: NetBIOSName | None) -> bytes:
        if x is None:
            return b""
        return x.encode()

    def i2len(self, pkt: Packet | None, x: Any) -> int:
        return len(self.i2m(pkt, x))

    def addfield(self, pkt: Packet | None, s: bytes, val: NetBIOSName | None) -> bytes:
        return s + self.i2m(pkt, val)

    def getfield(self, pkt: Packet | None, s: bytes) -> tuple[bytes, NetBIOSName]:
        # WireError here makes scapy keep the body as Raw: the caller sees an undecodable name.
        name, end = decode_first_level(s)
        return s[end:], name

    def i2repr(self, pkt: Packet | None, x: NetBIOSName | None) -> str:
        if x is None:
            return repr(x)
        return f"{x}.{x.scope.decode('ascii', 'replace')}" if x.scope else str(x)


class NBTSessionRequest(Packet):
    """SESSION REQUEST body: CALLED NAME, then CALLING NAME (RFC 1002 §4.3.2)."""

    name = "NBT Session Request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        FirstLevelNameField("CALLED_NAME", NetBIOSName(b"*SMBSERVER", SERVER_SUFFIX)),
        FirstLevelNameField("CALLING_NAME", NetBIOSName(b"", WORKSTATION_SUFFIX)),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class NBTNegativeSessionResponse(Packet):
    """NEGATIVE SESSION RESPONSE body: one ERROR_CODE byte (RFC 1002 §4.3.4)."""

    name = "NBT Negative Session Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteEnumField("ERROR_CODE", CALLED_NAME_NOT_PRESENT, NEGATIVE_RESPONSE_ERRORS),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class NBTRetargetSessionResponse(Packet):
    """SESSION RETARGET RESPONSE body: RETARGET_IP_ADDRESS and PORT (RFC 1002 §4.3.5)."""

    name = "NBT Retarget Session Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        IPField("RETARGET_IP_ADDRESS", "0.0.0.0"),
        ShortField("PORT", NBSS_PORT),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


# scapy binds its SMB dispatcher under NBTSession for every TYPE, and bindings are tried in
# order, so ours would never be reached. Only a SESSION MESSAGE carries SMB: rebind it so.
split_layers(NBTSession, _SMBGeneric)
bind_layers(NBTSession, _SMBGeneric, TYPE=SESSION_MESSAGE)
bind_layers(NBTSession, NBTSessionRequest, TYPE=SESSION_REQUEST)
bind_layers(NBTSession, NBTNegativeSessionResponse, TYPE=NEGATIVE_SESSION_RESPONSE)
bind_layers(NBTSession, NBTRetargetSessionResponse, TYPE=RETARGET_SESSION_RESPONSE)


def frame_header(header: bytes) -> tuple[int, int]:
    """TYPE and the 17-bit LENGTH from the first 4 bytes of a frame (RFC 1002 §4.3.1).

    Raises WireError for bytes that cannot start a session packet: an unknown TYPE or
    reserved FLAGS bits set, which is what TLS, HTTP or SMB2 without a header look like.
    """
    if len(header) < NBSS_HEADER_LENGTH:
        raise WireError(f"a session packet header has {NBSS_HEADER_LENGTH} bytes")
    packet_type, flags, length = _NBSS_HEADER.unpack_from(header, 0)
    if packet_type not in SESSION_PACKET_TYPES:
        raise WireError(f"session packet type 0x{packet_type:02X} is not NetBIOS")
    if flags & RESERVED_FLAGS:
        raise WireError(f"session packet flags 0x{flags:02X} set reserved bits")
    return packet_type, ((flags & LENGTH_EXTENSION) << 16) | length


def parse_frame(frame: bytes) -> NBTSession:
    """One whole frame, header and LENGTH bytes, dissected (RFC 1002 §4.3).

    Raises WireError when the bytes are not exactly one session packet or scapy fails on them.
    """
    _, length = frame_header(frame)
    if len(frame) != NBSS_HEADER_LENGTH + length:
        raise WireError(f"frame has {len(frame)} bytes; its header says {length} + 4")
    try:
        return NBTSession(frame)
    except Exception as exc:  # scapy raises anything from struct.error to IndexError
        raise WireError(f"session packet does not dissect: {exc}") from exc


def parse_session_request(frame: bytes) -> tuple[NetBIOSName, NetBIOSName]:
    """CALLED NAME and CALLING NAME of a whole SESSION REQUEST frame (RFC 1002 §4.3.2)."""
    return parse_session_request_body(frame[NBSS_HEADER_LENGTH:])


def parse_session_request_body(body: bytes) -> tuple[NetBIOSName, NetBIOSName]:
    """CALLED NAME and CALLING NAME of a SESSION REQUEST's body (RFC 1002 §4.3.2).

    Without scapy, for the session path; raises WireError where NBTSessionRequest does not
    dissect (a name that does not decode), trailing bytes ignored as that layer ignores them.
    """
    called, end = decode_first_level(body)
    calling, _ = decode_first_level(body, end)
    return called, calling


def _frame(packet_type: int, body: bytes = b"") -> bytes:
    """`body` behind a header of `packet_type` and its LENGTH, as NBTSession builds it."""
    if len(body) > MAX_NBSS_LENGTH:
        raise WireError(f"session packet of {len(body)} bytes exceeds 17-bit LENGTH")
    return _NBSS_HEADER.pack(packet_type, len(body) >> 16, len(body) & 0xFFFF) + body


def session_message(payload: Packet | bytes) -> bytes:
    """`payload` (an SMB) framed as a SESSION MESSAGE (RFC 1002 §4.3.6)."""
    return _frame(SESSION_MESSAGE, payload if isinstance(payload, bytes) else raw(payload))


def session_request(called: NetBIOSName, calling: NetBIOSName) -> bytes:
    """A SESSION REQUEST from `calling` to `called` (RFC 1002 §4.3.2)."""
    return raw(NBTSession() / NBTSessionRequest(CALLED_NAME=called, CALLING_NAME=calling))


def positive_response() -> bytes:
    """POSITIVE SESSION RESPONSE, `82 00 00 00` (RFC 1002 §4.3.3)."""
    return _frame(POSITIVE_SESSION_RESPONSE)


def negative_response(error_code: int = CALLED_NAME_NOT_PRESENT) -> bytes:
    """NEGATIVE SESSION RESPONSE with `error_code` (RFC 1002 §4.3.4)."""
    if error_code not in NEGATIVE_RESPONSE_ERRORS:
        raise ValueError(f"0x{error_code:02X} is not a negative session response error code")
    return _frame(NEGATIVE_SESSION_RESPONSE, bytes([error_code]))


def retarget_response(address: str, port: int = NBSS_PORT) -> bytes:
    """SESSION RETARGET RESPONSE sending the caller to `address`:`port` (RFC 1002 §4.3.5)."""
    return raw(NBTSession() / NBTRetargetSessionResponse(RETARGET_IP_ADDRESS=address, PORT=port))


def keepalive() -> bytes:
    """SESSION KEEP ALIVE, `85 00 00 00` (RFC 1002 §4.3.7)."""
    return _frame(SESSION_KEEP_ALIVE)
