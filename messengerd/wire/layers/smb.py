"""SMB core message commands 0xD0, 0xD5, 0xD7, 0xD6 as scapy layers, and the replies a receiver
sends ([MS-MSRP] §2.2.3, [MS-CIFS] §2.2.2.4, PROTOCOL.md §4).

The bodies bind under scapy's `SMB_Header` by Command; one dispatcher per binding picks the
request or the response body from the header's REPLY flag, so `NBTSession(frame)` yields
`NBTSession / SMB_Header / SMBSendMessageRequest` and so on. These are the reference
definition; the runtime reads and builds the same bytes with messengerd.wire.smb.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
from messengerd.wire.smb import (
    BUFFER_FORMAT_DATA_BLOCK,
    BUFFER_FORMAT_STRING,
    SMB_COM_SEND_END_MB_MESSAGE,
    SMB_COM_SEND_MESSAGE,
    SMB_COM_SEND_START_MB_MESSAGE,
    SMB_COM_SEND_TEXT_MB_MESSAGE,
    SMB_FLAGS_REPLY,
    SMB_HEADER_LENGTH,
    SMBError,
    check_word_count,
    reply_flags,
    reply_status,
)


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

    COMMAND: ClassVar[int]
    """The message command this body belongs to."""
    RESPONSE: ClassVar[bool] = False
    """True for a response body, sent with the header's REPLY flag."""

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def check(self) -> None:
        """Raise WireError where the fields break [MS-MSRP] §2.2.3 beyond what can be read."""
        check_word_count(self.COMMAND, self.WordCount, response=self.RESPONSE)


class SMBSendMessageRequest(_MessageBody):
    """SMB_COM_SEND_MESSAGE request: a whole message in one block ([MS-MSRP] §2.2.3.1.1)."""

    name = "SMB Send Message Request"
    COMMAND = SMB_COM_SEND_MESSAGE
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
    COMMAND = SMB_COM_SEND_MESSAGE
    RESPONSE = True
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendStartMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_START_MB_MESSAGE request: who to whom ([MS-MSRP] §2.2.3.2.1)."""

    name = "SMB Send Start of Multi-block Message Request"
    COMMAND = SMB_COM_SEND_START_MB_MESSAGE
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
    COMMAND = SMB_COM_SEND_START_MB_MESSAGE
    RESPONSE = True
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 1),
        ConditionalField(LEShortField("MessageGroupId", 0), lambda pkt: pkt.WordCount >= 1),
        LEShortField("ByteCount", 0),
    ]


class SMBSendTextMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_TEXT_MB_MESSAGE request: one block of text ([MS-MSRP] §2.2.3.3.1)."""

    name = "SMB Send Text of Multi-block Message Request"
    COMMAND = SMB_COM_SEND_TEXT_MB_MESSAGE
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
    COMMAND = SMB_COM_SEND_TEXT_MB_MESSAGE
    RESPONSE = True
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendEndMBMessageRequest(_MessageBody):
    """SMB_COM_SEND_END_MB_MESSAGE request: the group is complete ([MS-MSRP] §2.2.3.4.1)."""

    name = "SMB Send End of Multi-block Message Request"
    COMMAND = SMB_COM_SEND_END_MB_MESSAGE
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("WordCount", 1),
        LEShortField("MessageGroupId", 0),
        LEShortField("ByteCount", 0),
    ]


class SMBSendEndMBMessageResponse(_MessageBody):
    """SMB_COM_SEND_END_MB_MESSAGE response: WordCount 0, ByteCount 0 ([MS-MSRP] §2.2.3.4.2)."""

    name = "SMB Send End of Multi-block Message Response"
    COMMAND = SMB_COM_SEND_END_MB_MESSAGE
    RESPONSE = True
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

    def check(self) -> None:
        """Raise WireError unless WordCount is 0 ([MS-CIFS] §3.3.4.1.2)."""
        if self.WordCount != 0:
            raise WireError(f"SMB error response: WordCount {self.WordCount}, [MS-CIFS] says 0")


MESSAGE_BODIES: dict[tuple[int, bool], type[_MessageBody]] = {
    (body.COMMAND, body.RESPONSE): body
    for body in (
        SMBSendMessageRequest,
        SMBSendMessageResponse,
        SMBSendStartMBMessageRequest,
        SMBSendStartMBMessageResponse,
        SMBSendTextMBMessageRequest,
        SMBSendTextMBMessageResponse,
        SMBSendEndMBMessageRequest,
        SMBSendEndMBMessageResponse,
    )
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
    status, flags2 = reply_status(int(request.Flags2), error)
    return SMB_Header(
        Command=request.Command,
        Status=status,
        Flags=reply_flags(int(request.Flags)),
        Flags2=flags2,
        PIDHigh=request.PIDHigh,
        SecuritySignature=bytes(8),
        Reserved=0,
        TID=request.TID,
        PIDLow=request.PIDLow,
        UID=request.UID,
        MID=request.MID,
    )


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
