"""SMB core message commands 0xD0, 0xD5, 0xD7, 0xD6 as scapy layers, and the replies a receiver
sends ([MS-MSRP] §2.2.3, [MS-CIFS] §2.2.2.4, PROTOCOL.md §4).

The bodies bind under scapy's `SMB_Header` by Command; one dispatcher per binding picks the
request or the response body from the header's REPLY flag, so `NBTSession(frame)` yields
`NBTSession / SMB_Header / SMBSendMessageRequest` and so on.

The session path reads requests and builds replies with `parse_header`, `parse_request`,
`build_success_reply` and `build_error_reply` instead: struct, the same fields and bytes as the
layers, which stay the definition (captures, decode, tests).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from scapy.config import conf
from scapy.fields import (
    ByteField,
    ConditionalField,
    LEFieldLenField,
    LEShortField,
    StrLenField,
    StrNullField,
)
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import SMB_Header
from scapy.packet import Packet, bind_bottom_up, bind_top_down

from messengerd.wire.errors import WireError

SMB_HEADER_LENGTH = 32
"""Bytes of the SMB header before WordCount ([MS-CIFS] §2.2.3.1)."""
SMB1_PROTOCOL = b"\xffSMB"
"""The Protocol field that opens every SMB1 header ([MS-CIFS] §2.2.3.1)."""

# Message command codes ([MS-CIFS] §2.2.2.1; bodies in [MS-MSRP] §2.2.3).
SMB_COM_SEND_MESSAGE = 0xD0
SMB_COM_SEND_BROADCAST_MESSAGE = 0xD1
SMB_COM_FORWARD_USER_NAME = 0xD2
SMB_COM_CANCEL_FORWARD = 0xD3
SMB_COM_GET_MACHINE_NAME = 0xD4
SMB_COM_SEND_START_MB_MESSAGE = 0xD5
SMB_COM_SEND_END_MB_MESSAGE = 0xD6
SMB_COM_SEND_TEXT_MB_MESSAGE = 0xD7
SMB_COM_NEGOTIATE = 0x72

MESSAGE_COMMANDS: dict[int, str] = {
    SMB_COM_SEND_MESSAGE: "SMB_COM_SEND_MESSAGE",
    SMB_COM_SEND_BROADCAST_MESSAGE: "SMB_COM_SEND_BROADCAST_MESSAGE",
    SMB_COM_FORWARD_USER_NAME: "SMB_COM_FORWARD_USER_NAME",
    SMB_COM_CANCEL_FORWARD: "SMB_COM_CANCEL_FORWARD",
    SMB_COM_GET_MACHINE_NAME: "SMB_COM_GET_MACHINE_NAME",
    SMB_COM_SEND_START_MB_MESSAGE: "SMB_COM_SEND_START_MB_MESSAGE",
    SMB_COM_SEND_END_MB_MESSAGE: "SMB_COM_SEND_END_MB_MESSAGE",
    SMB_COM_SEND_TEXT_MB_MESSAGE: "SMB_COM_SEND_TEXT_MB_MESSAGE",
}


def command_name(command: int) -> str:
    """`SMB_COM_SEND_MESSAGE` for 0xD0 and so on; `SMB command 0x72` for the others."""
    return MESSAGE_COMMANDS.get(command, f"SMB command 0x{command:02X}")


# Header flags ([MS-CIFS] §2.2.3.1).
SMB_FLAGS_CASE_INSENSITIVE = 0x08
SMB_FLAGS_REPLY = 0x80
SMB_FLAGS2_LONG_NAMES = 0x0001
SMB_FLAGS2_EAS = 0x0002
SMB_FLAGS2_NT_STATUS = 0x4000

REPLY_FLAGS2 = SMB_FLAGS2_LONG_NAMES | SMB_FLAGS2_EAS
"""Flags2 bits smbd sets in every reply (Samba's common_flags2; frames 103-107 of the
samba-smbclient capture carry 0x4003). NT_STATUS is added when Status is an NTSTATUS or zero,
so a success reply is byte for byte the one smbd sends."""

# Buffer formats ([MS-CIFS] §2.2.2.2 via [MS-MSRP] §2.2.3.1.1).
BUFFER_FORMAT_DATA_BLOCK = 0x01
BUFFER_FORMAT_STRING = 0x04

MAX_BLOCK_TEXT_BYTES = 128
"""Text a sender may put in one D0 or D7 block ([MS-MSRP] §2.2.3.1.1, §3.2.4.4). A bound on
senders only: receivers accept larger blocks (see messengerd.protocol.session)."""

# DOS error classes and codes ([MS-CIFS] §2.2.2.4; Samba's smberr.h names).
ERRDOS = 0x01
ERRSRV = 0x02
ERRinvalidparam = 87
"""ERRDOS: a parameter is invalid; the DOS form of STATUS_INVALID_PARAMETER."""
ERRunknownsmb = 22
"""ERRSRV: unknown SMB command (Samba's name, "from NT 3.5"). As a Status its 4 bytes are those
of [MS-ERREF]'s STATUS_SMB_BAD_COMMAND, 0x00160002."""
ERRmsgoff = 82
"""ERRSRV: the server is not receiving messages."""
ERRnoroom = 83
"""ERRSRV: no room in the buffer for the message."""

STATUS_SUCCESS = 0x00000000
STATUS_INVALID_PARAMETER = 0xC000000D
"""[MS-ERREF] §2.3.1; Samba maps it to ERRDOS/ERRinvalidparam for DOS-error clients."""


@dataclass(frozen=True)
class SMBError:
    """An error a reply carries: its DOS class and code, and its NTSTATUS where one maps."""

    error_class: int
    error_code: int
    nt_status: int | None = None

    @property
    def dos_status(self) -> int:
        """The 4-byte Status in DOS form: class, reserved 0, code LE16 ([MS-CIFS] §2.2.3.1)."""
        return self.error_class | (self.error_code << 16)

    def __str__(self) -> str:
        return f"DOS {self.error_class}/{self.error_code}"


ERROR_INVALID_PARAMETER = SMBError(ERRDOS, ERRinvalidparam, STATUS_INVALID_PARAMETER)
"""A message command out of order or unreadable: smbd answers a D7/D6 with no D5 this way."""
# The ERRSRV errors go out in DOS form even to a client that set FLAGS2_NT_STATUS, as smbd sends
# them (reply_doserror, reply_force_doserror); the reply's Flags2 tells the client which form.
ERROR_UNKNOWN_SMB = SMBError(ERRSRV, ERRunknownsmb)
ERROR_MESSAGING_OFF = SMBError(ERRSRV, ERRmsgoff)
ERROR_NO_ROOM = SMBError(ERRSRV, ERRnoroom)


class OEMStringField(StrNullField):
    """An OEM string and its NUL ([MS-MSRP] §2.2.3.1.1); with no NUL the body does not dissect."""

    def getfield(self, pkt: Packet | None, s: bytes) -> tuple[bytes, bytes]:
        end = s.find(self.DELIMITER)
        if end < 0:
            # scapy's StrNullField would read an empty string and shift every later field.
            raise WireError(f"{self.name} has no terminating NUL")
        return s[end + 1 :], s[:end]


def _byte_count_from_rest(pkt: bytes) -> bytes:
    """`pkt` with ByteCount set to the bytes after it, as [MS-CIFS] §2.2.3.3 defines it.

    D0 and D5 have no parameter words, so ByteCount follows WordCount whatever WordCount says.
    """
    return pkt[:1] + (len(pkt) - 3).to_bytes(2, "little") + pkt[3:]


class _MessageBody(Packet):
    """What every message command body shares: nothing follows it inside the SMB."""

    WORD_COUNT = 0
    """The WordCount [MS-MSRP] §2.2.3 requires for this body."""

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def check(self) -> None:
        """Raise WireError where the fields break [MS-MSRP] §2.2.3 beyond what can be read."""
        _check_word_count(type(self), self.WordCount)


def _check_word_count(body: type[_MessageBody], word_count: int) -> None:
    """Raise WireError unless `word_count` is the one [MS-MSRP] §2.2.3 gives `body`."""
    if word_count != body.WORD_COUNT:
        raise WireError(f"{body.name}: WordCount {word_count}, [MS-MSRP] says {body.WORD_COUNT}")


class SMBSendMessageRequest(_MessageBody):
    """SMB_COM_SEND_MESSAGE request: a whole message in one block ([MS-MSRP] §2.2.3.1.1)."""

    name = "SMB Send Message Request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", None),
        ByteField("BufferFormat1", BUFFER_FORMAT_STRING),
        OEMStringField("OriginatorName", b""),
        ByteField("BufferFormat2", BUFFER_FORMAT_STRING),
        OEMStringField("DestinationName", b""),
        ByteField("BufferFormat3", BUFFER_FORMAT_DATA_BLOCK),
        LEFieldLenField("DataLength", None, length_of="Data"),
        StrLenField("Data", b"", length_from=lambda pkt: pkt.DataLength),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.ByteCount is None:
            pkt = _byte_count_from_rest(pkt)
        return pkt + pay


class SMBSendMessageResponse(_MessageBody):
    """SMB_COM_SEND_MESSAGE response: WordCount 0, ByteCount 0 ([MS-MSRP] §2.2.3.1.2)."""

    name = "SMB Send Message Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendStartMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_START_MB_MESSAGE request: who to whom ([MS-MSRP] §2.2.3.2.1)."""

    name = "SMB Send Start of Multi-block Message Request"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", None),
        ByteField("BufferFormat1", BUFFER_FORMAT_STRING),
        OEMStringField("OriginatorName", b""),
        ByteField("BufferFormat2", BUFFER_FORMAT_STRING),
        OEMStringField("DestinationName", b""),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.ByteCount is None:
            pkt = _byte_count_from_rest(pkt)
        return pkt + pay


class SMBSendStartMBMessageResponse(_MessageBody):
    """SMB_COM_SEND_START_MB_MESSAGE response: the MessageGroupId ([MS-MSRP] §2.2.3.2.2).

    smbd answers with WordCount 0 and no MessageGroupId; smbclient then sends group 0.
    """

    name = "SMB Send Start of Multi-block Message Response"
    WORD_COUNT = 1
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 1),
        ConditionalField(LEShortField("MessageGroupId", 0), lambda pkt: pkt.WordCount >= 1),
        LEShortField("ByteCount", 0),
    ]


class SMBSendTextMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_TEXT_MB_MESSAGE request: one block of text ([MS-MSRP] §2.2.3.3.1)."""

    name = "SMB Send Text of Multi-block Message Request"
    WORD_COUNT = 1
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 1),
        LEShortField("MessageGroupId", 0),
        # BufferFormat and DataLength come before Data: 3 bytes more than Data itself.
        LEFieldLenField("ByteCount", None, length_of="Data", adjust=lambda pkt, x: x + 3),
        ByteField("BufferFormat", BUFFER_FORMAT_DATA_BLOCK),
        LEFieldLenField("DataLength", None, length_of="Data"),
        StrLenField("Data", b"", length_from=lambda pkt: pkt.DataLength),
    ]


class SMBSendTextMBMessageResponse(_MessageBody):
    """SMB_COM_SEND_TEXT_MB_MESSAGE response: WordCount 0, ByteCount 0 ([MS-MSRP] §2.2.3.3.2)."""

    name = "SMB Send Text of Multi-block Message Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendEndMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_END_MB_MESSAGE request: the group is complete ([MS-MSRP] §2.2.3.4.1)."""

    name = "SMB Send End of Multi-block Message Request"
    WORD_COUNT = 1
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 1),
        LEShortField("MessageGroupId", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendEndMBMessageResponse(_MessageBody):
    """SMB_COM_SEND_END_MB_MESSAGE response: WordCount 0, ByteCount 0 ([MS-MSRP] §2.2.3.4.2)."""

    name = "SMB Send End of Multi-block Message Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBErrorResponse(_MessageBody):
    """Any error response: WordCount 0, ByteCount 0, the error in Status ([MS-CIFS] §3.3.4.1.2)."""

    name = "SMB Error Response"
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


MESSAGE_BODIES: dict[tuple[int, bool], type[_MessageBody]] = {
    (SMB_COM_SEND_MESSAGE, False): SMBSendMessageRequest,
    (SMB_COM_SEND_MESSAGE, True): SMBSendMessageResponse,
    (SMB_COM_SEND_START_MB_MESSAGE, False): SMBSendStartMBMessageRequest,
    (SMB_COM_SEND_START_MB_MESSAGE, True): SMBSendStartMBMessageResponse,
    (SMB_COM_SEND_TEXT_MB_MESSAGE, False): SMBSendTextMBMessageRequest,
    (SMB_COM_SEND_TEXT_MB_MESSAGE, True): SMBSendTextMBMessageResponse,
    (SMB_COM_SEND_END_MB_MESSAGE, False): SMBSendEndMBMessageRequest,
    (SMB_COM_SEND_END_MB_MESSAGE, True): SMBSendEndMBMessageResponse,
}
"""The body for each (Command, REPLY flag) pair."""


def is_reply(header: SMB_Header) -> bool:
    """True when the header's SMB_FLAGS_REPLY bit is set ([MS-CIFS] §2.2.3.1)."""
    return bool(int(header.Flags) & SMB_FLAGS_REPLY)


class SMBMessageDispatcher(Packet):
    """Chooses the request or response body of a message command from the SMB header below."""

    name = "SMB message command"

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        # scapy 2.8's Packet_metaclass.__call__ hands dispatch_hook the keyword arguments of
        # the dissection, among them _underlayer: the SMB_Header this body follows.
        header = kargs.get("_underlayer")
        if isinstance(header, SMB_Header):
            body = MESSAGE_BODIES.get((header.Command, is_reply(header)))
            if body is not None:
                return body
        return conf.raw_layer


for (_command, _reply), _body in MESSAGE_BODIES.items():
    bind_top_down(SMB_Header, _body, Command=_command, Flags=SMB_FLAGS_REPLY if _reply else 0)
for _command in (
    SMB_COM_SEND_MESSAGE,
    SMB_COM_SEND_START_MB_MESSAGE,
    SMB_COM_SEND_TEXT_MB_MESSAGE,
    SMB_COM_SEND_END_MB_MESSAGE,
):
    bind_bottom_up(SMB_Header, SMBMessageDispatcher, Command=_command)


def smb_of(frame: NBTSession) -> SMB_Header:
    """The SMB header a dissected SESSION MESSAGE carries ([MS-CIFS] §2.2.3.1).

    Raises WireError when the frame holds no complete SMB1 header (SMB2, garbage, truncated),
    that is when no reply can echo its TID, PID, UID and MID.
    """
    header = frame.payload
    if not isinstance(header, SMB_Header) or frame.LENGTH < SMB_HEADER_LENGTH:
        raise WireError("session message does not hold a complete SMB1 header")
    return header


def reply_header(request: SMB_Header, error: SMBError | None = None) -> SMB_Header:
    """The header of a reply to `request`, the way smbd builds it ([MS-CIFS] §2.2.3.1).

    Flags: REPLY plus the request's case bit; TID, PIDHigh, PIDLow, UID, MID echoed; Flags2:
    REPLY_FLAGS2, plus NT_STATUS when Status is an NTSTATUS. An error goes out as an NTSTATUS
    when it has one and the request set FLAGS2_NT_STATUS, otherwise in DOS form.
    """
    status, flags2 = _reply_status(int(request.Flags2), error)
    return SMB_Header(
        Command=request.Command,
        Status=status,
        Flags=SMB_FLAGS_REPLY | (int(request.Flags) & SMB_FLAGS_CASE_INSENSITIVE),
        Flags2=flags2,
        PIDHigh=request.PIDHigh,
        SecuritySignature=bytes(8),
        Reserved=0,
        TID=request.TID,
        PIDLow=request.PIDLow,
        UID=request.UID,
        MID=request.MID,
    )


def _reply_status(request_flags2: int, error: SMBError | None) -> tuple[int, int]:
    """A reply's Status and Flags2 for `error` (None: success), as reply_header describes."""
    if error is None:
        return STATUS_SUCCESS, REPLY_FLAGS2 | SMB_FLAGS2_NT_STATUS
    if error.nt_status is not None and request_flags2 & SMB_FLAGS2_NT_STATUS:
        return error.nt_status, REPLY_FLAGS2 | SMB_FLAGS2_NT_STATUS
    return error.dos_status, REPLY_FLAGS2


def success_reply(request: SMB_Header, message_group_id: int | None = None) -> SMB_Header:
    """The success reply to a D0, D5, D7 or D6 `request` ([MS-MSRP] §2.2.3.x.2).

    A D5 reply carries `message_group_id` (WordCount 1); the others are WordCount 0, ByteCount 0.
    """
    body_class = MESSAGE_BODIES.get((request.Command, True))
    if body_class is None:
        raise ValueError(f"command 0x{request.Command:02X} is not a message command")
    if body_class is SMBSendStartMBMessageResponse:
        if message_group_id is None:
            raise ValueError("a D5 reply needs a MessageGroupId")
        body: Packet = SMBSendStartMBMessageResponse(MessageGroupId=message_group_id)
    else:
        body = body_class()
    return reply_header(request) / body


def error_reply(request: SMB_Header, error: SMBError) -> SMB_Header:
    """An error reply to any `request`: its header with Status, WordCount 0, ByteCount 0."""
    return reply_header(request, error) / SMBErrorResponse()


# The same header and bodies read and written with struct, for the session path: building
# scapy packets there cost ~3 ms of CPU a message (bench/README.md). The layers above stay the
# definition; tests/unit/test_smb_fast_codec.py holds both to the same fields and bytes.

_HEADER = struct.Struct("<4sBIBHH10xHHHH")
"""Protocol, Command, Status, Flags, Flags2, PIDHigh, SecuritySignature and Reserved (10 bytes,
zero in a reply), TID, PIDLow, UID, MID: the 32-byte header ([MS-CIFS] §2.2.3.1)."""
_D7_FIXED = struct.Struct("<BHHBH")
"""D7 WordCount, MessageGroupId, ByteCount, BufferFormat, DataLength ([MS-MSRP] §2.2.3.3.1)."""
_D6_FIXED = struct.Struct("<BHH")
"""D6 WordCount, MessageGroupId, ByteCount ([MS-MSRP] §2.2.3.4.1)."""
_DATA_BLOCK = struct.Struct("<BH")
"""A data block's BufferFormat and DataLength ([MS-CIFS] §2.2.2.2)."""
_NAMES_OFFSET = 4
"""Where D0's and D5's OriginatorName starts: after WordCount, ByteCount, BufferFormat1
([MS-MSRP] §2.2.3.1.1, §2.2.3.2.1)."""
_EMPTY_REPLY_BODY = bytes(3)
"""WordCount 0, ByteCount 0: the body of every reply but D5's ([MS-MSRP] §2.2.3.x.2)."""
_D5_REPLY_BODY = struct.Struct("<BHH")
"""D5 reply WordCount 1, MessageGroupId, ByteCount 0 ([MS-MSRP] §2.2.3.2.2)."""


@dataclass(frozen=True, slots=True)
class SMBHeader:
    """The header fields a receiver reads and echoes; SMB_Header's names ([MS-CIFS] §2.2.3.1)."""

    Command: int
    Status: int
    Flags: int
    Flags2: int
    PIDHigh: int
    TID: int
    PIDLow: int
    UID: int
    MID: int


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """A D0, D5, D7 or D6 request body's fields; empty where it has none ([MS-MSRP] §2.2.3)."""

    OriginatorName: bytes = b""
    DestinationName: bytes = b""
    MessageGroupId: int = 0
    Data: bytes = b""


def parse_header(data: bytes) -> SMBHeader:
    """The header an SMB (`data`: a SESSION MESSAGE's payload) starts with ([MS-CIFS] §2.2.3.1).

    Raises WireError where smb_of() does: no complete SMB1 header (SMB2, garbage, truncated).
    """
    if len(data) < SMB_HEADER_LENGTH or data[:4] != SMB1_PROTOCOL:
        raise WireError("session message does not hold a complete SMB1 header")
    return SMBHeader(*_HEADER.unpack_from(data, 0)[1:])


def _names(body: bytes) -> tuple[bytes, bytes, int] | None:
    """D0's and D5's OriginatorName, DestinationName and the offset after them, or None."""
    end = body.find(b"\0", _NAMES_OFFSET)
    # BufferFormat2 follows OriginatorName's NUL; a find from past the end finds nothing.
    after = body.find(b"\0", end + 2) if end >= 0 else -1
    if after < 0:
        return None
    return body[_NAMES_OFFSET:end], body[end + 2 : after], after + 1


def _data(body: bytes, offset: int) -> bytes | None:
    """The data block at `offset`, as far as it goes when shorter than DataLength, or None."""
    if len(body) < offset + _DATA_BLOCK.size:
        return None
    _, data_length = _DATA_BLOCK.unpack_from(body, offset)
    start = offset + _DATA_BLOCK.size
    return body[start : start + data_length]


def _read_send_message(body: bytes) -> MessageRequest | None:
    names = _names(body)
    if names is None:
        return None
    originator, destination, offset = names
    data = _data(body, offset)
    if data is None:
        return None
    return MessageRequest(originator, destination, Data=data)


def _read_send_start(body: bytes) -> MessageRequest | None:
    names = _names(body)
    if names is None:
        return None
    return MessageRequest(names[0], names[1])


def _read_send_text(body: bytes) -> MessageRequest | None:
    if len(body) < _D7_FIXED.size:
        return None
    _, group, _, _, data_length = _D7_FIXED.unpack_from(body, 0)
    return MessageRequest(
        MessageGroupId=group, Data=body[_D7_FIXED.size : _D7_FIXED.size + data_length]
    )


def _read_send_end(body: bytes) -> MessageRequest | None:
    if len(body) < _D6_FIXED.size:
        return None
    return MessageRequest(MessageGroupId=_D6_FIXED.unpack_from(body, 0)[1])


_REQUEST_READERS = {
    SMB_COM_SEND_MESSAGE: _read_send_message,
    SMB_COM_SEND_START_MB_MESSAGE: _read_send_start,
    SMB_COM_SEND_TEXT_MB_MESSAGE: _read_send_text,
    SMB_COM_SEND_END_MB_MESSAGE: _read_send_end,
}
"""How each request body is read: field by field as its layer dissects, every fixed field
required, a string up to its NUL, Data as far as it goes, trailing bytes ignored."""


def parse_request(command: int, body: bytes) -> MessageRequest:
    """The D0, D5, D7 or D6 request body after the header, read as its layer reads it.

    Raises WireError where the layer does not dissect it or its check() fails ([MS-MSRP] §2.2.3).
    """
    request = _REQUEST_READERS[command](body)
    if request is None:
        raise WireError(f"{command_name(command)} body does not dissect")
    _check_word_count(MESSAGE_BODIES[(command, False)], body[0])
    return request


def _reply_header_bytes(request: SMBHeader, error: SMBError | None) -> bytes:
    """reply_header(), as bytes."""
    status, flags2 = _reply_status(request.Flags2, error)
    return _HEADER.pack(
        SMB1_PROTOCOL,
        request.Command,
        status,
        SMB_FLAGS_REPLY | (request.Flags & SMB_FLAGS_CASE_INSENSITIVE),
        flags2,
        request.PIDHigh,
        request.TID,
        request.PIDLow,
        request.UID,
        request.MID,
    )


def build_success_reply(request: SMBHeader, message_group_id: int | None = None) -> bytes:
    """success_reply(), as bytes: the same checks, the same reply ([MS-MSRP] §2.2.3.x.2)."""
    if (request.Command, True) not in MESSAGE_BODIES:
        raise ValueError(f"command 0x{request.Command:02X} is not a message command")
    if request.Command != SMB_COM_SEND_START_MB_MESSAGE:
        return _reply_header_bytes(request, None) + _EMPTY_REPLY_BODY
    if message_group_id is None:
        raise ValueError("a D5 reply needs a MessageGroupId")
    return _reply_header_bytes(request, None) + _D5_REPLY_BODY.pack(
        SMBSendStartMBMessageResponse.WORD_COUNT, message_group_id, 0
    )


def build_error_reply(request: SMBHeader, error: SMBError) -> bytes:
    """error_reply(), as bytes: the header with Status, WordCount 0, ByteCount 0."""
    return _reply_header_bytes(request, error) + _EMPTY_REPLY_BODY
