"""SMB core message commands 0xD0, 0xD5, 0xD7, 0xD6 and their replies, read and built with
struct ([MS-MSRP] §2.2.3, [MS-CIFS] §2.2.3.1, §2.2.2.4, PROTOCOL.md §4).

The session path reads a request with `parse_header` and `parse_request` and answers it with
`build_success_reply` or `build_error_reply`; the sender builds its requests with the
`build_send_*_request` functions and reads replies with `parse_header`. The scapy layers in
messengerd.wire.layers.smb are the reference definition: tests hold these functions to the
same fields and bytes (tests/unit/wire/test_smb_fast_codec.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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


REQUEST_WORD_COUNTS = {
    SMB_COM_SEND_MESSAGE: 0,
    SMB_COM_SEND_START_MB_MESSAGE: 0,
    SMB_COM_SEND_TEXT_MB_MESSAGE: 1,
    SMB_COM_SEND_END_MB_MESSAGE: 1,
}
"""The WordCount of each message command's request ([MS-MSRP] §2.2.3.1.1-2.2.3.4.1); its keys
are the commands a receiver serves."""
RESPONSE_WORD_COUNTS = {
    SMB_COM_SEND_MESSAGE: 0,
    SMB_COM_SEND_START_MB_MESSAGE: 1,
    SMB_COM_SEND_TEXT_MB_MESSAGE: 0,
    SMB_COM_SEND_END_MB_MESSAGE: 0,
}
"""The WordCount of each message command's response ([MS-MSRP] §2.2.3.1.2-2.2.3.4.2)."""


def check_word_count(command: int, word_count: int, *, response: bool = False) -> None:
    """Raise WireError unless `word_count` is the one [MS-MSRP] §2.2.3 gives `command`'s body."""
    expected = (RESPONSE_WORD_COUNTS if response else REQUEST_WORD_COUNTS)[command]
    if word_count != expected:
        kind = "response" if response else "request"
        raise WireError(
            f"{command_name(command)} {kind}: WordCount {word_count}, [MS-MSRP] says {expected}"
        )


ERROR_REQ_NOT_ACCEP = 71
"""ERRDOS 71 ([MS-ERREF] ERROR_REQ_NOT_ACCEP): the DOS form of STATUS_REQUEST_NOT_ACCEPTED,
what smbd 4.17 answers a D5 with when it has no message command."""

_ERROR_NAMES = {
    (ERRDOS, ERRinvalidparam): "ERRDOS/ERRinvalidparam",
    (ERRDOS, ERROR_REQ_NOT_ACCEP): "ERRDOS/ERROR_REQ_NOT_ACCEP (request not accepted)",
    (ERRSRV, ERRunknownsmb): "ERRSRV/ERRunknownsmb",
    (ERRSRV, ERRmsgoff): "ERRSRV/ERRmsgoff (not receiving messages)",
    (ERRSRV, ERRnoroom): "ERRSRV/ERRnoroom (no room for the message)",
}
_NT_STATUS_NAMES = {STATUS_INVALID_PARAMETER: "STATUS_INVALID_PARAMETER"}

_HEADER = struct.Struct("<4sBIBHH10xHHHH")
"""Protocol, Command, Status, Flags, Flags2, PIDHigh, SecuritySignature and Reserved (10 bytes,
zero in a reply), TID, PIDLow, UID, MID: the 32-byte header ([MS-CIFS] §2.2.3.1)."""
_D7_FIXED = struct.Struct("<BHHBH")
"""D7 WordCount, MessageGroupId, ByteCount, BufferFormat, DataLength ([MS-MSRP] §2.2.3.3.1)."""
_D6_FIXED = struct.Struct("<BHH")
"""D6 WordCount, MessageGroupId, ByteCount ([MS-MSRP] §2.2.3.4.1)."""
_NO_WORDS = struct.Struct("<BH")
"""WordCount 0 and ByteCount: how D0's and D5's requests open ([MS-MSRP] §2.2.3.1.1)."""
_DATA_BLOCK = struct.Struct("<BH")
"""A data block's BufferFormat and DataLength ([MS-CIFS] §2.2.2.2)."""
_NAMES_OFFSET = 4
"""Where D0's and D5's OriginatorName starts: after WordCount, ByteCount, BufferFormat1
([MS-MSRP] §2.2.3.1.1, §2.2.3.2.1)."""
_EMPTY_REPLY_BODY = bytes(3)
"""WordCount 0, ByteCount 0: the body of every reply but D5's ([MS-MSRP] §2.2.3.x.2)."""
_D5_REPLY_BODY = struct.Struct("<BHH")
"""D5 reply WordCount 1, MessageGroupId, ByteCount 0 ([MS-MSRP] §2.2.3.2.2)."""
MAX_SMB_COUNT = 0xFFFF
"""ByteCount, DataLength and MessageGroupId are 16-bit fields ([MS-CIFS] §2.2.3.3)."""


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


def describe_status(header: SMBHeader) -> str:
    """A reply's Status in words: an NTSTATUS when Flags2 says so, else DOS class/code
    ([MS-CIFS] §2.2.3.1); "success" for zero."""
    status = header.Status
    if status == STATUS_SUCCESS:
        return "success"
    if header.Flags2 & SMB_FLAGS2_NT_STATUS:
        return _NT_STATUS_NAMES.get(status, f"NTSTATUS 0x{status:08X}")
    error_class, error_code = status & 0xFF, status >> 16
    return _ERROR_NAMES.get((error_class, error_code), f"DOS error {error_class}/{error_code}")


# Reading requests (the session path).


def parse_header(data: bytes) -> SMBHeader:
    """The header an SMB (`data`: a SESSION MESSAGE's payload) starts with ([MS-CIFS] §2.2.3.1).

    Raises WireError where the layers' smb_of() does: no complete SMB1 header (SMB2, garbage,
    truncated).
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
    check_word_count(command, body[0])
    return request


# Building replies (the session path).


def reply_status(request_flags2: int, error: SMBError | None) -> tuple[int, int]:
    """A reply's Status and Flags2 for `error` (None: success), the way smbd sets them.

    Flags2 is REPLY_FLAGS2, plus NT_STATUS when Status is an NTSTATUS. An error goes out as an
    NTSTATUS when it has one and the request set FLAGS2_NT_STATUS, otherwise in DOS form.
    """
    if error is None:
        return STATUS_SUCCESS, REPLY_FLAGS2 | SMB_FLAGS2_NT_STATUS
    if error.nt_status is not None and request_flags2 & SMB_FLAGS2_NT_STATUS:
        return error.nt_status, REPLY_FLAGS2 | SMB_FLAGS2_NT_STATUS
    return error.dos_status, REPLY_FLAGS2


def reply_flags(request_flags: int) -> int:
    """A reply's Flags: REPLY and the request's case bit, as smbd sets them ([MS-CIFS] §2.2.3.1)."""
    return SMB_FLAGS_REPLY | (request_flags & SMB_FLAGS_CASE_INSENSITIVE)


def _reply_header_bytes(request: SMBHeader, error: SMBError | None) -> bytes:
    """The header of a reply to `request`: TID, PIDHigh, PIDLow, UID and MID echoed."""
    status, flags2 = reply_status(request.Flags2, error)
    return _HEADER.pack(
        SMB1_PROTOCOL,
        request.Command,
        status,
        reply_flags(request.Flags),
        flags2,
        request.PIDHigh,
        request.TID,
        request.PIDLow,
        request.UID,
        request.MID,
    )


def build_success_reply(request: SMBHeader, message_group_id: int | None = None) -> bytes:
    """The success reply to a D0, D5, D7 or D6 `request` ([MS-MSRP] §2.2.3.x.2).

    A D5 reply carries `message_group_id` (WordCount 1); the others are WordCount 0, ByteCount 0.
    """
    if request.Command not in RESPONSE_WORD_COUNTS:
        raise ValueError(f"command 0x{request.Command:02X} is not a message command")
    if request.Command != SMB_COM_SEND_START_MB_MESSAGE:
        return _reply_header_bytes(request, None) + _EMPTY_REPLY_BODY
    if message_group_id is None:
        raise ValueError("a D5 reply needs a MessageGroupId")
    return _reply_header_bytes(request, None) + _D5_REPLY_BODY.pack(
        RESPONSE_WORD_COUNTS[SMB_COM_SEND_START_MB_MESSAGE], message_group_id, 0
    )


def build_error_reply(request: SMBHeader, error: SMBError) -> bytes:
    """An error reply to any `request`: its header with Status, WordCount 0, ByteCount 0
    ([MS-CIFS] §3.3.4.1.2)."""
    return _reply_header_bytes(request, error) + _EMPTY_REPLY_BODY


# Building requests and reading their replies (the sender).


def build_request_header(command: int) -> bytes:
    """The header of a request: every field but Command zero ([MS-MSRP] §2.2.3)."""
    return _HEADER.pack(SMB1_PROTOCOL, command, 0, 0, 0, 0, 0, 0, 0, 0)


def _oem_string(name: bytes, label: str) -> bytes:
    """`name` as a buffer-format 0x04 string with its NUL ([MS-MSRP] §2.2.3.1.1)."""
    if b"\0" in name:
        raise WireError(f"{label} contains a NUL")
    return bytes([BUFFER_FORMAT_STRING]) + name + b"\0"


def _data_block(data: bytes) -> bytes:
    """`data` as a buffer-format 0x01 data block: its DataLength, then the bytes."""
    if len(data) > MAX_SMB_COUNT:
        raise WireError(f"a data block of {len(data)} bytes exceeds DataLength's 16 bits")
    return _DATA_BLOCK.pack(BUFFER_FORMAT_DATA_BLOCK, len(data)) + data


def _without_words(command: int, buffers: bytes) -> bytes:
    """A request with WordCount 0 and `buffers` as its data, ByteCount counting them."""
    if len(buffers) > MAX_SMB_COUNT:
        raise WireError(f"a request of {len(buffers)} bytes exceeds ByteCount's 16 bits")
    return build_request_header(command) + _NO_WORDS.pack(0, len(buffers)) + buffers


def _check_group(message_group_id: int) -> int:
    if not 0 <= message_group_id <= MAX_SMB_COUNT:
        raise WireError(f"MessageGroupId {message_group_id} does not fit 16 bits")
    return message_group_id


def build_send_message_request(originator: bytes, destination: bytes, data: bytes) -> bytes:
    """SMB_COM_SEND_MESSAGE (D0): a whole message in one block ([MS-MSRP] §2.2.3.1.1)."""
    return _without_words(
        SMB_COM_SEND_MESSAGE,
        _oem_string(originator, "OriginatorName")
        + _oem_string(destination, "DestinationName")
        + _data_block(data),
    )


def build_send_start_mb_message_request(originator: bytes, destination: bytes) -> bytes:
    """SMB_COM_SEND_START_MB_MESSAGE (D5): who to whom ([MS-MSRP] §2.2.3.2.1)."""
    return _without_words(
        SMB_COM_SEND_START_MB_MESSAGE,
        _oem_string(originator, "OriginatorName") + _oem_string(destination, "DestinationName"),
    )


def build_send_text_mb_message_request(message_group_id: int, data: bytes) -> bytes:
    """SMB_COM_SEND_TEXT_MB_MESSAGE (D7): one block of text ([MS-MSRP] §2.2.3.3.1)."""
    block = _data_block(data)
    if len(block) > MAX_SMB_COUNT:
        raise WireError(f"a request of {len(block)} bytes exceeds ByteCount's 16 bits")
    words = struct.pack(
        "<BHH",
        REQUEST_WORD_COUNTS[SMB_COM_SEND_TEXT_MB_MESSAGE],
        _check_group(message_group_id),
        len(block),
    )
    return build_request_header(SMB_COM_SEND_TEXT_MB_MESSAGE) + words + block


def build_send_end_mb_message_request(message_group_id: int) -> bytes:
    """SMB_COM_SEND_END_MB_MESSAGE (D6): the group is complete ([MS-MSRP] §2.2.3.4.1)."""
    return build_request_header(SMB_COM_SEND_END_MB_MESSAGE) + _D6_FIXED.pack(
        REQUEST_WORD_COUNTS[SMB_COM_SEND_END_MB_MESSAGE], _check_group(message_group_id), 0
    )


def parse_send_start_mb_message_response(body: bytes) -> int | None:
    """The MessageGroupId a D5 response body (after the header) carries ([MS-MSRP] §2.2.3.2.2).

    None where it carries none, as its layer reads it: WordCount 0 (smbd's answer, after which
    smbclient sends group 0, and an error reply's) or a body cut short.
    """
    if len(body) < _D5_REPLY_BODY.size or body[0] < 1:
        return None
    return _D5_REPLY_BODY.unpack_from(body, 0)[1]
