"""The session path without I/O: NBSS frames and the SMB message commands on TCP 139
(RFC 1002 §4.3, [MS-MSRP] §2.2.3, PROTOCOL.md §3-4).

Feed received bytes to `SessionMachine.receive_data`; it returns what to send, the messages
that completed, and when to close. A completed message is not acknowledged until the caller
has stored it: it answers with `message_stored()` or `message_refused()`, writes those bytes,
then calls `receive_data(b"")` so that frames which arrived meanwhile are processed. While a
message awaits that answer no further frame is processed, so replies leave in request order.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from messengerd.core import limits
from messengerd.protocol.events import (
    CloseConnection,
    Directory,
    Dropped,
    MessageReceived,
    SendData,
)
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, recipient_name
from messengerd.wire.smb import MessageRequest, SMBHeader
from messengerd.wire.text import DEFAULT_CODEPAGE

SessionEvent = SendData | MessageReceived | CloseConnection | Dropped

MAX_BUFFERED_BYTES = 2 * (nbss.NBSS_HEADER_LENGTH + limits.MAX_SESSION_FRAME)
"""Input held between calls. Complete frames are processed at once, so this fills only while a
message awaits storage; senders wait for each reply, so two frames' worth is already a flood."""

FIRST_MESSAGE_GROUP_ID = 0
"""The MessageGroupId of a session's first D5 reply; later groups count up from it. 0 because a
sender that ignores the reply's id sends 0: smbclient does, after smbd's WordCount 0 reply
(samba-smbclient capture, frame 104), so its first message still arrives."""
MAX_MESSAGE_GROUP_ID = 0xFFFF
"""MessageGroupId is 16 bits ([MS-MSRP] §2.2.3.2.2); after it the ids wrap to 0."""


class SessionState(enum.Enum):
    """Where a session is (RFC 1002 §4.3, §5.3): before its first frame, open, or over."""

    AWAITING_SESSION = "awaiting session"
    ESTABLISHED = "established"
    CLOSED = "closed"


class SessionStateError(RuntimeError):
    """The caller drove the machine out of order, e.g. message_stored() with no message pending."""


@dataclass
class _MessageGroup:
    """One multi-block message: D5 opens it, D7 appends to it, D6 ends it ([MS-MSRP] §3.2.4.4)."""

    message_group_id: int
    sender: bytes
    recipient: bytes
    text: bytearray = field(default_factory=bytearray)


class SessionMachine:
    """One TCP session of the session service, from first byte to close, without I/O."""

    def __init__(
        self,
        directory: Directory,
        *,
        require_session_request: bool = False,
        codepage: str = DEFAULT_CODEPAGE,
    ) -> None:
        """`require_session_request`: close a session whose first frame is not a SESSION
        REQUEST (RFC 1002 §5.3), instead of taking SMB directly as on a non-139 port.
        `codepage`: the OEM code page a To field is compared in against our aliases."""
        self.directory = directory
        self.require_session_request = require_session_request
        self.codepage = codepage
        self.state = SessionState.AWAITING_SESSION
        self.called_name: NetBIOSName | None = None
        """The alias the SESSION REQUEST called; None for a session that began with SMB."""
        self._buffer = bytearray()
        self._group: _MessageGroup | None = None
        self._pending: SMBHeader | None = None
        self._next_group_id = FIRST_MESSAGE_GROUP_ID

    @property
    def message_pending(self) -> bool:
        """True from a MessageReceived until message_stored() or message_refused()."""
        return self._pending is not None

    # The caller's side.

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """Take bytes from the peer (b"" to resume after a message); return what follows.

        Only a CloseConnection (input overflowing while the message waits) may follow a
        MessageReceived in its list, and nothing follows a CloseConnection.
        Never raises for any input: what cannot be read ends in a reply or a CloseConnection.
        """
        if self.state is SessionState.CLOSED:
            return []
        self._buffer += data
        events: list[SessionEvent] = []
        try:
            while self._pending is None and self.state is not SessionState.CLOSED:
                frame = self._next_frame()
                if frame is None:
                    break
                events += self._handle_frame(frame)
        except WireError as exc:
            events += self._close(str(exc))
        except Exception as exc:  # a bug must end this session, not the listener
            events += self._close(f"internal error: {exc!r}")
        if self.state is not SessionState.CLOSED and len(self._buffer) > MAX_BUFFERED_BYTES:
            events += self._close(
                f"peer sent {len(self._buffer)} bytes without waiting for replies"
            )
        return events

    def message_stored(self) -> bytes:
        """The success reply to the D0 or D6 that completed the pending message."""
        request = self._take_pending()
        return nbss.session_message(smb.build_success_reply(request))

    def message_refused(self, error: smb.SMBError = smb.ERROR_NO_ROOM) -> bytes:
        """An error reply to the D0 or D6 of the pending message; by default ERRSRV/ERRnoroom,
        "no room for message", for a store that failed ([MS-CIFS] §2.2.2.4)."""
        request = self._take_pending()
        return nbss.session_message(smb.build_error_reply(request, error))

    def _take_pending(self) -> SMBHeader:
        if self._pending is None:
            raise SessionStateError("no message is waiting to be stored")
        request, self._pending = self._pending, None
        return request

    # Framing (RFC 1002 §4.3.1).

    def _next_frame(self) -> bytes | None:
        """The next whole frame out of the buffer, or None until more bytes arrive."""
        if len(self._buffer) < nbss.NBSS_HEADER_LENGTH:
            return None
        _, length = nbss.frame_header(self._buffer)
        if length > limits.MAX_SESSION_FRAME:
            raise WireError(f"session packet of {length} bytes exceeds {limits.MAX_SESSION_FRAME}")
        end = nbss.NBSS_HEADER_LENGTH + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[:end])
        del self._buffer[:end]
        return frame

    def _handle_frame(self, frame: bytes) -> list[SessionEvent]:
        packet_type, _ = nbss.frame_header(frame)
        handler = self._FRAME_HANDLERS.get((self.state, packet_type))
        if handler is None:
            kind = nbss.SESSION_PACKET_TYPES[packet_type]
            return self._close(f"{kind} is not expected from a caller in state {self.state.value}")
        return handler(self, frame)

    def _close(self, reason: str) -> list[SessionEvent]:
        self.state = SessionState.CLOSED
        self._buffer.clear()
        self._group = None
        return [CloseConnection(reason)]

    # Session packets (RFC 1002 §4.3.2-4.3.7).

    def _on_session_request(self, frame: bytes) -> list[SessionEvent]:
        try:
            called, _ = nbss.parse_session_request(frame)
        except WireError:
            return [
                SendData(nbss.negative_response(nbss.UNSPECIFIED_ERROR)),
                *self._close("SESSION REQUEST names do not decode"),
            ]
        if not self.directory.is_local(called):
            # RFC 1002 §4.3.4; smbclient then retries with *SMBSERVER<20>.
            return [
                SendData(nbss.negative_response(nbss.CALLED_NAME_NOT_PRESENT)),
                *self._close(f"called name {called} not present"),
            ]
        self.state = SessionState.ESTABLISHED
        self.called_name = called
        return [SendData(nbss.positive_response())]

    def _on_first_session_message(self, frame: bytes) -> list[SessionEvent]:
        if self.require_session_request:
            return self._close("SMB before a SESSION REQUEST")
        # smbclient -M on a port other than 139 sends its D5 straight away (PROTOCOL.md §4).
        self.state = SessionState.ESTABLISHED
        return self._on_session_message(frame)

    def _on_keep_alive(self, frame: bytes) -> list[SessionEvent]:
        # RFC 1002 §4.3.7: the receiver discards it; no reply.
        return []

    def _on_session_message(self, frame: bytes) -> list[SessionEvent]:
        if len(frame) == nbss.NBSS_HEADER_LENGTH:
            return [Dropped("empty SESSION MESSAGE")]
        # struct, not the scapy layers: they cost milliseconds a frame (bench/README.md).
        header = smb.parse_header(frame[nbss.NBSS_HEADER_LENGTH :])
        if header.Flags & smb.SMB_FLAGS_REPLY:
            # Answering a reply could start a loop with a peer as strict as we are.
            return [Dropped(f"reply to {smb.command_name(header.Command)} from the caller")]
        command = header.Command
        handler = self._COMMAND_HANDLERS.get(command)
        if handler is None:
            # D1-D4 bodies are unconfirmed (PROTOCOL.md §4); NEGOTIATE and the rest are not ours.
            return self._refuse(
                header, smb.ERROR_UNKNOWN_SMB, f"{smb.command_name(command)} is not served"
            )
        try:
            body = smb.parse_request(
                command, frame[nbss.NBSS_HEADER_LENGTH + smb.SMB_HEADER_LENGTH :]
            )
        except WireError as exc:
            return self._refuse(header, smb.ERROR_INVALID_PARAMETER, str(exc))
        return handler(self, header, body)

    # SMB message commands ([MS-MSRP] §2.2.3, §3.2.4.4).

    def _on_send_message(self, header: SMBHeader, body: MessageRequest) -> list[SessionEvent]:
        refusal = self._check_names(header, body.OriginatorName, body.DestinationName)
        if refusal:
            return refusal
        text = body.Data
        # Blocks over MAX_BLOCK_TEXT_BYTES are taken (senders exceed it); only the total counts.
        if len(text) > limits.MAX_TEXT_BYTES:
            return self._refuse(
                header, smb.ERROR_NO_ROOM, f"D0 text of {len(text)} bytes is over the limit"
            )
        self._pending = header
        return [self._message(body.OriginatorName, body.DestinationName, text)]

    def _on_send_start(self, header: SMBHeader, body: MessageRequest) -> list[SessionEvent]:
        refusal = self._check_names(header, body.OriginatorName, body.DestinationName)
        if refusal:
            return refusal
        events: list[SessionEvent] = []
        if self._group is not None:
            # smbd, too, drops an unfinished group when a new D5 comes.
            events.append(
                Dropped(f"message group {self._group.message_group_id} never ended; discarded")
            )
        group_id = self._next_group_id
        self._next_group_id = (group_id + 1) % (MAX_MESSAGE_GROUP_ID + 1)
        self._group = _MessageGroup(group_id, body.OriginatorName, body.DestinationName)
        events.append(self._reply(smb.build_success_reply(header, group_id)))
        return events

    def _on_send_text(self, header: SMBHeader, body: MessageRequest) -> list[SessionEvent]:
        group = self._group_for(body.MessageGroupId)
        if group is None:
            return self._refuse_out_of_group(header, "D7", body.MessageGroupId)
        block = body.Data
        if len(group.text) + len(block) > limits.MAX_TEXT_BYTES:
            self._group = None
            return self._refuse(
                header,
                smb.ERROR_NO_ROOM,
                f"message group {group.message_group_id} is over {limits.MAX_TEXT_BYTES} "
                "text bytes; discarded",
            )
        group.text += block
        return [self._reply(smb.build_success_reply(header))]

    def _on_send_end(self, header: SMBHeader, body: MessageRequest) -> list[SessionEvent]:
        group = self._group_for(body.MessageGroupId)
        if group is None:
            return self._refuse_out_of_group(header, "D6", body.MessageGroupId)
        self._group = None
        self._pending = header
        return [self._message(group.sender, group.recipient, bytes(group.text))]

    # Helpers for the handlers.

    def _check_names(
        self, header: SMBHeader, sender: bytes, recipient: bytes
    ) -> list[SessionEvent] | None:
        """A refusal when From or To is too long, or, with no SESSION REQUEST, To is not ours."""
        for label, value in (("From", sender), ("To", recipient)):
            if len(value) > limits.MAX_FIELD_BYTES:
                return self._refuse(
                    header,
                    smb.ERROR_INVALID_PARAMETER,
                    f"{label} field of {len(value)} bytes is over {limits.MAX_FIELD_BYTES}",
                )
        if self.called_name is None:
            # No session request named the alias, so To is the only address there is.
            alias = recipient_name(recipient, self.codepage)
            if alias is None or not self.directory.is_local(alias):
                # ERRmsgoff, "not receiving messages": true of this name on this host.
                return self._refuse(
                    header, smb.ERROR_MESSAGING_OFF, f"To {recipient!r} is not an alias of ours"
                )
        return None

    def _group_for(self, message_group_id: int) -> _MessageGroup | None:
        if self._group is None or self._group.message_group_id != message_group_id:
            return None
        return self._group

    def _refuse_out_of_group(
        self, header: SMBHeader, command: str, message_group_id: int
    ) -> list[SessionEvent]:
        # smbd answers a D7/D6 with no D5 with NT_STATUS_INVALID_PARAMETER (DOS form
        # ERRDOS/ERRinvalidparam for clients that did not ask for NT status); so do we.
        return self._refuse(
            header,
            smb.ERROR_INVALID_PARAMETER,
            f"{command} for message group {message_group_id}, which no D5 opened",
        )

    def _message(self, sender: bytes, recipient: bytes, text: bytes) -> MessageReceived:
        if not recipient and self.called_name is not None:
            recipient = self.called_name.name
        return MessageReceived(sender=sender, recipient=recipient, text=text, path="session")

    def _refuse(self, header: SMBHeader, error: smb.SMBError, reason: str) -> list[SessionEvent]:
        reply = smb.build_error_reply(header, error)
        return [Dropped(f"{reason}: answered {error}"), self._reply(reply)]

    @staticmethod
    def _reply(reply: bytes) -> SendData:
        return SendData(nbss.session_message(reply))

    # The state machine, as tables.

    _FRAME_HANDLERS: ClassVar[dict[tuple[SessionState, int], Callable[..., list[SessionEvent]]]] = {
        (SessionState.AWAITING_SESSION, nbss.SESSION_REQUEST): _on_session_request,
        (SessionState.AWAITING_SESSION, nbss.SESSION_MESSAGE): _on_first_session_message,
        (SessionState.AWAITING_SESSION, nbss.SESSION_KEEP_ALIVE): _on_keep_alive,
        (SessionState.ESTABLISHED, nbss.SESSION_MESSAGE): _on_session_message,
        (SessionState.ESTABLISHED, nbss.SESSION_KEEP_ALIVE): _on_keep_alive,
    }
    """Which session packet is handled in which state. Any other pair ends the session: a
    second SESSION REQUEST (smbd: "multiple session request not permitted"), or a response
    packet from a caller."""

    _COMMAND_HANDLERS: ClassVar[dict[int, Callable[..., list[SessionEvent]]]] = {
        smb.SMB_COM_SEND_MESSAGE: _on_send_message,
        smb.SMB_COM_SEND_START_MB_MESSAGE: _on_send_start,
        smb.SMB_COM_SEND_TEXT_MB_MESSAGE: _on_send_text,
        smb.SMB_COM_SEND_END_MB_MESSAGE: _on_send_end,
    }
    """The SMB commands served; every other one is answered ERRSRV/ERRunknownsmb."""
