"""NetBIOS session service packets scapy lacks, as scapy layers (RFC 1002 §4.3).

scapy's `NBTSession` is the 4-byte header; the bodies below bind under it by TYPE, so
`NBTSession(frame)` dissects a whole session request, negative response or retarget response,
and a SESSION MESSAGE down to the message command body (messengerd.wire.layers.smb). These are
the reference definition; the runtime reads and builds the same bytes with messengerd.wire.nbss.
"""

from __future__ import annotations

from typing import Any

from scapy.fields import ByteEnumField, Field, IPField, ShortField
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import _SMBGeneric
from scapy.packet import Packet, bind_layers, split_layers

from messengerd.wire.errors import WireError

# Imported for its bindings: a SESSION MESSAGE then dissects down to the message command body.
from messengerd.wire.layers import smb  # noqa: F401
from messengerd.wire.names import (
    SERVER_SUFFIX,
    WORKSTATION_SUFFIX,
    NetBIOSName,
    decode_first_level,
)
from messengerd.wire.nbss import (
    CALLED_NAME_NOT_PRESENT,
    NBSS_HEADER_LENGTH,
    NBSS_PORT,
    NEGATIVE_RESPONSE_ERRORS,
    NEGATIVE_SESSION_RESPONSE,
    RETARGET_SESSION_RESPONSE,
    SESSION_MESSAGE,
    SESSION_REQUEST,
    frame_header,
)


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
