"""NetBIOS datagrams on UDP 138 as scapy layers (RFC 1002 §4.4).

scapy's NBTDatagram is not used for the datagram header: it reads each name as exactly 34
bytes (so a name with a NetBIOS scope shifts every later field), accepts letters outside A-P,
and has no layout for error (0x13) or query (0x14-0x16) datagrams. The layers below replace it
in scapy's own declarative style; a whole direct datagram's user data dissects as scapy's
SMB_Header / SMBMailslot_Write. These are the reference definition; the runtime reads and
builds the same bytes with messengerd.wire.datagram.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.fields import ByteEnumField, Field, FlagsField, IPField, ShortField
from scapy.layers.smb import SMB_Header
from scapy.packet import Packet, Raw

from messengerd.wire.datagram import (
    DATAGRAM_ERROR,
    DATAGRAM_HEADER_LENGTH,
    DATAGRAM_QUERY_REQUEST,
    DESTINATION_NAME_NOT_PRESENT,
    DIRECT_UNIQUE,
    ERROR_CODES,
    FLAG_FIRST,
    FLAG_MORE,
    MSG_TYPES,
    NETBIOS_DATAGRAM_PORT,
    NODE_TYPE_M,
    NODE_TYPE_P,
)
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, decode_first_level
from messengerd.wire.smb import SMB1_PROTOCOL

_FLAG_NAMES = {FLAG_MORE: "MORE", FLAG_FIRST: "FIRST", NODE_TYPE_P: "SNT_P", NODE_TYPE_M: "SNT_M"}


class NetBIOSScopedNameField(Field[NetBIOSName, bytes]):
    """A first-level encoded name with its scope labels (RFC 1001 §14.1, RFC 1002 §4.1).

    scapy's NetBIOSNameField is a fixed 31 bytes and leaves the suffix and root label to two
    more fields, so it cannot read a name with a scope.
    """

    def __init__(self, name: str, default: NetBIOSName) -> None:
        super().__init__(name, default, fmt="s")

    def i2len(self, pkt: Packet | None, x: NetBIOSName) -> int:
        return len(x.encode())

    def addfield(self, pkt: Packet | None, s: bytes, val: NetBIOSName | None) -> bytes:
        name = val if val is not None else self.default
        return s if name is None else s + name.encode()

    def getfield(self, pkt: Packet | None, s: bytes) -> tuple[bytes, NetBIOSName]:
        name, end = decode_first_level(s)
        # A scope label holding a dot cannot come back out of NetBIOSName unchanged; refusing it
        # keeps every parsed name exactly as long on the wire as name.encode().
        if name.encode() != s[:end]:
            raise WireError("NetBIOS scope label contains a dot")
        return s[end:], name

    def i2repr(self, pkt: Packet | None, x: NetBIOSName) -> str:
        return str(x)


def _header_fields(msg_type: int) -> list[Field[Any, Any]]:
    """MSG_TYPE, FLAGS, DGM_ID, SOURCE_IP, SOURCE_PORT: common to every datagram (RFC 1002 §4.4)."""
    return [
        ByteEnumField("MsgType", msg_type, MSG_TYPES),
        FlagsField("Flags", FLAG_FIRST, 8, _FLAG_NAMES),
        ShortField("DgmID", 0),
        IPField("SourceIP", "0.0.0.0"),
        ShortField("SourcePort", NETBIOS_DATAGRAM_PORT),
    ]


class NBTDirectDatagram(Packet):
    """Direct unique, direct group or broadcast datagram, or a fragment of one (RFC 1002 §4.4.2).

    The payload is the user data: an SMB (a mailslot write) when whole, raw bytes in a fragment.
    """

    name = "NBT Direct Datagram"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        *_header_fields(DIRECT_UNIQUE),
        ShortField("DgmLength", None),
        ShortField("PacketOffset", 0),
        NetBIOSScopedNameField("SourceName", NetBIOSName(b"")),
        NetBIOSScopedNameField("DestinationName", NetBIOSName(b"")),
    ]

    def names_length(self) -> int:
        """Bytes of the two encoded names, the part of DGM_LENGTH that is not user data."""
        return len(self.SourceName.encode()) + len(self.DestinationName.encode())

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.DgmLength is None:
            # DGM_LENGTH sits in bytes 10-11 and counts both names and the user data.
            length = len(pkt) - DATAGRAM_HEADER_LENGTH + len(pay)
            pkt = pkt[:10] + struct.pack("!H", length) + pkt[12:]
        return pkt + pay

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        user_data_length = max(0, self.DgmLength - self.names_length())
        return s[:user_data_length], s[user_data_length:]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        if self.PacketOffset == 0 and not self.Flags & FLAG_MORE and payload[:4] == SMB1_PROTOCOL:
            return SMB_Header
        return Raw


class NBTDatagramError(Packet):
    """Error datagram: no length, offset or names, one ERROR_CODE byte (RFC 1002 §4.4.3)."""

    name = "NBT Datagram Error"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        *_header_fields(DATAGRAM_ERROR),
        ByteEnumField("ErrorCode", DESTINATION_NAME_NOT_PRESENT, ERROR_CODES),
    ]


class NBTDatagramQuery(Packet):
    """Datagram query request or its positive/negative response: a name only (RFC 1002 §4.4.4-5)."""

    name = "NBT Datagram Query"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        *_header_fields(DATAGRAM_QUERY_REQUEST),
        NetBIOSScopedNameField("DestinationName", NetBIOSName(b"")),
    ]
