"""NetBIOS session service frames (RFC 1002 §4.3), read and built with struct.

The session path and the sender frame SMBs with `session_message`, exchange SESSION REQUEST
and its answers, and cut a stream into frames with `frame_header`. The scapy layers in
messengerd.wire.layers.nbss are the reference definition: tests hold these functions to the
same bytes (tests/unit/wire/test_nbss_codec.py).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import SupportsBytes

from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, decode_first_level

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
MAX_PORT = 0xFFFF
"""A RETARGET response's PORT is 16 bits (RFC 1002 §4.3.5)."""
_RETARGET = struct.Struct("!4sH")
"""RETARGET_IP_ADDRESS and PORT (RFC 1002 §4.3.5)."""


def frame_header(header: bytes | bytearray) -> tuple[int, int]:
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


def take_frame(buffer: bytearray, max_length: int) -> tuple[int, bytes] | None:
    """The first whole session packet in `buffer` as (TYPE, payload), removed from it; None
    until all its bytes are there (RFC 1002 §4.3.1).

    Raises WireError for bytes that cannot start a session packet, or a LENGTH over
    `max_length` (a bound of the reader's, so that no one makes it buffer 128 KiB).
    """
    if len(buffer) < NBSS_HEADER_LENGTH:
        return None
    packet_type, length = frame_header(buffer)
    if length > max_length:
        raise WireError(f"session packet of {length} bytes exceeds {max_length}")
    end = NBSS_HEADER_LENGTH + length
    if len(buffer) < end:
        return None
    payload = bytes(buffer[NBSS_HEADER_LENGTH:end])
    del buffer[:end]
    return packet_type, payload


def parse_session_request(frame: bytes) -> tuple[NetBIOSName, NetBIOSName]:
    """CALLED NAME and CALLING NAME of a whole SESSION REQUEST frame (RFC 1002 §4.3.2)."""
    return parse_session_request_body(frame[NBSS_HEADER_LENGTH:])


def parse_session_request_body(body: bytes) -> tuple[NetBIOSName, NetBIOSName]:
    """CALLED NAME and CALLING NAME of a SESSION REQUEST's body (RFC 1002 §4.3.2).

    Raises WireError where the NBTSessionRequest layer does not dissect (a name that does not
    decode); trailing bytes are ignored, as that layer ignores them.
    """
    called, end = decode_first_level(body)
    calling, _ = decode_first_level(body, end)
    return called, calling


def _frame(packet_type: int, body: bytes = b"") -> bytes:
    """`body` behind a header of `packet_type` and its LENGTH, as NBTSession builds it."""
    if len(body) > MAX_NBSS_LENGTH:
        raise WireError(f"session packet of {len(body)} bytes exceeds 17-bit LENGTH")
    return _NBSS_HEADER.pack(packet_type, len(body) >> 16, len(body) & 0xFFFF) + body


def session_message(payload: bytes | SupportsBytes) -> bytes:
    """`payload` (an SMB, or a scapy layer holding one) framed as a SESSION MESSAGE
    (RFC 1002 §4.3.6)."""
    return _frame(SESSION_MESSAGE, bytes(payload))


def session_request(called: NetBIOSName, calling: NetBIOSName) -> bytes:
    """A SESSION REQUEST from `calling` to `called` (RFC 1002 §4.3.2)."""
    return _frame(SESSION_REQUEST, called.encode() + calling.encode())


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
    try:
        packed = ipaddress.IPv4Address(address).packed
    except ValueError as exc:
        raise WireError(f"{address!r} is not an IPv4 address") from exc
    if not 0 <= port <= MAX_PORT:
        raise WireError(f"port {port} does not fit 16 bits")
    return _frame(RETARGET_SESSION_RESPONSE, _RETARGET.pack(packed, port))


def keepalive() -> bytes:
    """SESSION KEEP ALIVE, `85 00 00 00` (RFC 1002 §4.3.7)."""
    return _frame(SESSION_KEEP_ALIVE)
