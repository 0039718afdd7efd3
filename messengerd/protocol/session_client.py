"""The session service's caller side without I/O: one message out, as Windows sent it
(RFC 1002 §4.3, [MS-MSRP] §3.2.4.4, PROTOCOL.md §3-4).

h11's shape, as the server side (messengerd.protocol.session): `start()` gives the first
bytes to send, `receive_data` takes the receiver's, and `next_event` says what to send next
or how the message ended. Each request waits for the reply to the one before: a SESSION
REQUEST to the alias, then D0 for a single block, or D5, D7 blocks of 128 bytes and D6.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from messengerd.core import limits
from messengerd.protocol.events import NEED_DATA, CloseConnection, SendData, Sentinel
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName

MAX_REPLY_FRAME = limits.MAX_SESSION_FRAME
"""Largest session frame taken from a receiver: replies are 39 bytes, so more is not one."""


@dataclass(frozen=True)
class SessionRefused:
    """A NEGATIVE SESSION RESPONSE: the receiver has no such name (RFC 1002 §4.3.4)."""

    reason: str


@dataclass(frozen=True)
class MessageDelivered:
    """The receiver answered the last request with success: the message arrived."""

    pieces: int
    """D7 blocks of a multi-block message; 1 for a D0."""
    multi_block: bool


@dataclass(frozen=True)
class MessageRejected:
    """The receiver answered a message command with an error ([MS-CIFS] §2.2.2.4)."""

    command: int
    reply: smb.SMBHeader

    @property
    def unknown_command(self) -> bool:
        """ERRSRV/ERRunknownsmb, or its NTSTATUS twin STATUS_SMB_BAD_COMMAND (same 4 bytes):
        a receiver that does not know this command (smbd does not know D0 without a
        NEGOTIATE), so the text may go again another way."""
        return self.reply.Status == smb.ERROR_UNKNOWN_SMB.dos_status


@dataclass(frozen=True)
class ProtocolError:
    """The receiver does not answer as a session service does; `reason` says how."""

    reason: str


ClientEvent = (
    SendData | SessionRefused | MessageDelivered | MessageRejected | ProtocolError | CloseConnection
)


class Awaiting(enum.Enum):
    """What the caller waits for: the answer to its SESSION REQUEST, or a command's reply."""

    SESSION = "the answer to the SESSION REQUEST"
    SEND_MESSAGE = "the reply to SMB_COM_SEND_MESSAGE"
    SEND_START = "the reply to SMB_COM_SEND_START_MB_MESSAGE"
    SEND_TEXT = "the reply to SMB_COM_SEND_TEXT_MB_MESSAGE"
    SEND_END = "the reply to SMB_COM_SEND_END_MB_MESSAGE"
    NOTHING = "nothing"


_COMMANDS = {
    Awaiting.SEND_MESSAGE: smb.SMB_COM_SEND_MESSAGE,
    Awaiting.SEND_START: smb.SMB_COM_SEND_START_MB_MESSAGE,
    Awaiting.SEND_TEXT: smb.SMB_COM_SEND_TEXT_MB_MESSAGE,
    Awaiting.SEND_END: smb.SMB_COM_SEND_END_MB_MESSAGE,
}


class SessionClient:
    """One message sent over one session, caller side."""

    def __init__(
        self,
        sender: bytes,
        recipient: NetBIOSName,
        text: bytes,
        *,
        calling: NetBIOSName,
        single_block: bool,
        session_request: bool = True,
    ) -> None:
        """`single_block`: D0 (text of at most 128 bytes, MAX_BLOCK_TEXT_BYTES), else
        D5/D7/D6. `session_request`: call the alias first, as on port 139; without it the
        first SMB goes straight out, as smbclient does on other ports."""
        if single_block and len(text) > smb.MAX_BLOCK_TEXT_BYTES:
            raise ValueError(f"a D0 carries at most {smb.MAX_BLOCK_TEXT_BYTES} text bytes")
        self.sender = sender
        self.recipient = recipient
        self.text = text
        self.calling = calling
        self.single_block = single_block
        self.session_request = session_request
        self.awaiting = Awaiting.NOTHING
        self.ended_awaiting = Awaiting.NOTHING
        """What the caller was waiting for when the exchange ended (a close during a D0 means
        the receiver does not take D0)."""
        self._buffer = bytearray()
        self._closed = False
        self._blocks: list[bytes] = []
        """The D7 requests still to send, last first."""
        self._group = 0
        self._count = 0

    def start(self) -> bytes:
        """The first bytes to send."""
        if self.session_request:
            self.awaiting = Awaiting.SESSION
            return nbss.session_request(self.recipient, self.calling)
        return self._first_command()

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the receiver; b"" when it closed the session."""
        if data:
            self._buffer += data
        else:
            self._closed = True

    def next_event(self) -> ClientEvent | Sentinel:
        """What to send next, how the message ended, or NEED_DATA."""
        while self.awaiting is not Awaiting.NOTHING:
            try:
                frame = nbss.take_frame(self._buffer, MAX_REPLY_FRAME)
            except WireError as exc:
                return self._end(ProtocolError(f"not a NetBIOS session service: {exc}"))
            if frame is None:
                if self._closed:
                    waited = self.awaiting.value
                    return self._end(CloseConnection(f"closed while we waited for {waited}"))
                return NEED_DATA
            packet_type, payload = frame
            if packet_type == nbss.SESSION_KEEP_ALIVE:
                continue
            if self.awaiting is Awaiting.SESSION:
                return self._session_answer(packet_type, payload)
            return self._command_reply(packet_type, payload)
        return NEED_DATA

    # -- helpers ---------------------------------------------------------------------------

    def _end(self, event: ClientEvent) -> ClientEvent:
        self.ended_awaiting, self.awaiting = self.awaiting, Awaiting.NOTHING
        return event

    def _session_answer(self, packet_type: int, payload: bytes) -> ClientEvent:
        if packet_type == nbss.POSITIVE_SESSION_RESPONSE:
            return SendData(self._first_command())
        if packet_type == nbss.NEGATIVE_SESSION_RESPONSE and payload:
            reason = nbss.NEGATIVE_RESPONSE_ERRORS.get(payload[0], f"error 0x{payload[0]:02X}")
            return self._end(SessionRefused(f"a session to {self.recipient}: {reason}"))
        if packet_type == nbss.RETARGET_SESSION_RESPONSE:
            # RFC 1002 §5.3 lets a caller follow it; no Messenger receiver is known to send one.
            return self._end(ProtocolError("retargeted the session; not followed"))
        kind = nbss.SESSION_PACKET_TYPES.get(packet_type, hex(packet_type))
        return self._end(ProtocolError(f"answered a session request with {kind}"))

    def _first_command(self) -> bytes:
        if self.single_block:
            self.awaiting = Awaiting.SEND_MESSAGE
            request = smb.build_send_message_request(self.sender, self.recipient.name, self.text)
        else:
            self.awaiting = Awaiting.SEND_START
            request = smb.build_send_start_mb_message_request(self.sender, self.recipient.name)
        return nbss.session_message(request)

    def _command_reply(self, packet_type: int, payload: bytes) -> ClientEvent:
        command = _COMMANDS[self.awaiting]
        if packet_type != nbss.SESSION_MESSAGE:
            kind = nbss.SESSION_PACKET_TYPES[packet_type]
            return self._end(ProtocolError(f"answered {smb.command_name(command)} with {kind}"))
        try:
            header = smb.parse_header(payload)
        except WireError as exc:
            return self._end(ProtocolError(f"bad reply: {exc}"))
        if header.Command != command or not header.Flags & smb.SMB_FLAGS_REPLY:
            return self._end(
                ProtocolError(
                    f"answered {smb.command_name(command)} with {smb.command_name(header.Command)}"
                )
            )
        if header.Status != smb.STATUS_SUCCESS:
            return self._end(MessageRejected(command, header))
        return self._after_success(payload[smb.SMB_HEADER_LENGTH :])

    def _after_success(self, body: bytes) -> ClientEvent:
        if self.awaiting is Awaiting.SEND_MESSAGE:
            return self._end(MessageDelivered(1, multi_block=False))
        if self.awaiting is Awaiting.SEND_START:
            # smbd answers with WordCount 0 and no id; smbclient then uses 0, and so do we.
            group = smb.parse_send_start_mb_message_response(body) or 0
            step = smb.MAX_BLOCK_TEXT_BYTES
            texts = [self.text[at : at + step] for at in range(0, len(self.text), step)] or [b""]
            self._group = group
            self._count = len(texts)
            self._blocks = [
                nbss.session_message(smb.build_send_text_mb_message_request(group, text))
                for text in reversed(texts)
            ]
            self.awaiting = Awaiting.SEND_TEXT
            return SendData(self._blocks.pop())
        if self.awaiting is Awaiting.SEND_TEXT:
            if self._blocks:
                return SendData(self._blocks.pop())
            self.awaiting = Awaiting.SEND_END
            end = smb.build_send_end_mb_message_request(self._group)
            return SendData(nbss.session_message(end))
        return self._end(MessageDelivered(self._count, multi_block=True))
