"""The session service's server side without I/O: NBSS frames and the SMB message commands
(RFC 1002 §4.3, [MS-MSRP] §2.2.3, PROTOCOL.md §3-4).

h11's shape (messengerd.protocol.events): feed the peer's bytes to `receive_data`, take
events from `next_event` until it says NEED_DATA. A completed message comes out as
MessageReceived; the machine is then PAUSED, processing no further frame, until the caller
answers with `send(MessageAccepted())` or `send(MessageRefused(reason))` and writes the reply
those return. So replies leave in request order, and a sender is told its message arrived
only once the caller has stored it.

The same machine serves a TCP session (NBSS framing), a session of the Windows NetBIOS API
(NCB framing: each receive is one SMB, with no NBSS header, PROTOCOL.md §9), a pcap replay
and the fuzzers.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from messengerd.core import limits
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    Directory,
    Dropped,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    RefusalReason,
    SendData,
    Sentinel,
)
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, recipient_name
from messengerd.wire.smb import MessageRequest, SMBHeader
from messengerd.wire.text import DEFAULT_CODEPAGE

SessionEvent = SendData | MessageReceived | CloseConnection | Dropped

MAX_BUFFERED_BYTES = 2 * (nbss.NBSS_HEADER_LENGTH + limits.MAX_SESSION_FRAME)
"""Input held between calls. Frames are taken as they complete, so this fills only while a
message awaits the caller's answer; senders wait for each reply, so two frames' worth is
already a flood."""

FIRST_MESSAGE_GROUP_ID = 0
"""The MessageGroupId of a session's first D5 reply; later groups count up from it. 0 because a
sender that ignores the reply's id sends 0: smbclient does, after smbd's WordCount 0 reply
(samba-smbclient capture, frame 104), so its first message still arrives."""
MAX_MESSAGE_GROUP_ID = 0xFFFF
"""MessageGroupId is 16 bits ([MS-MSRP] §2.2.3.2.2); after it the ids wrap to 0."""

REFUSAL_ERRORS: dict[RefusalReason, smb.SMBError] = {
    "no_room": smb.ERROR_NO_ROOM,
    "not_an_alias": smb.ERROR_MESSAGING_OFF,
    "denied": smb.ERROR_MESSAGING_OFF,
}
"""The error a refused message's D0 or D6 is answered with: ERRnoroom, "no room for message",
for a store that failed, so the sender tries again; ERRmsgoff, "not receiving messages",
for a message this host will not take ([MS-CIFS] §2.2.2.4)."""


class Framing(enum.Enum):
    """How SMBs reach the machine."""

    NBSS = "nbss"
    """RFC 1002 §4.3 frames on a TCP stream: a session request, then session messages."""
    NCB = "ncb"
    """One SMB per receive_data(), as NCBRECV hands them; the session is already established
    to the name NCBLISTEN listened on (PROTOCOL.md §9)."""


class SessionState(enum.Enum):
    """Where a session is (RFC 1002 §4.3, §5.3): before its first frame, open, or over."""

    AWAITING_SESSION = "awaiting session"
    ESTABLISHED = "established"
    CLOSED = "closed"


class SessionStateError(RuntimeError):
    """The caller drove the machine out of order, e.g. send() with no message pending."""


@dataclass
class _MessageGroup:
    """One multi-block message: D5 opens it, D7 appends to it, D6 ends it ([MS-MSRP] §3.2.4.4)."""

    message_group_id: int
    sender: bytes
    recipient: bytes
    text: bytearray = field(default_factory=bytearray)


class SessionMachine:
    """One session of the session service, server side, from first byte to close."""

    def __init__(
        self,
        directory: Directory,
        *,
        require_session_request: bool = False,
        codepage: str = DEFAULT_CODEPAGE,
        framing: Framing = Framing.NBSS,
        called_name: NetBIOSName | None = None,
    ) -> None:
        """`require_session_request`: close a session whose first frame is not a SESSION
        REQUEST (RFC 1002 §5.3), instead of taking SMB directly as on a non-139 port.
        `codepage`: the OEM code page a To field is compared in against our aliases.
        `framing`: NBSS for a TCP stream, NCB for the NetBIOS API, which establishes the
        session itself: give it the `called_name` it listened on."""
        if framing is Framing.NCB and called_name is None:
            raise ValueError("an NCB session needs the called name it was established to")
        self.directory = directory
        self.require_session_request = require_session_request
        self.codepage = codepage
        self.framing = framing
        self.state = SessionState.AWAITING_SESSION
        self.called_name: NetBIOSName | None = None
        """The alias the session was called on; None for a session that began with SMB."""
        self.frames_received = 0
        """Whole frames taken so far: a driver's idle timer counts these, not bytes."""
        self._buffer = bytearray()
        self._frames: collections.deque[bytes] = collections.deque()
        self._events: collections.deque[SessionEvent] = collections.deque()
        self._group: _MessageGroup | None = None
        self._pending: SMBHeader | None = None
        self._peer_closed = False
        self._next_group_id = FIRST_MESSAGE_GROUP_ID
        if framing is Framing.NCB:
            self.state = SessionState.ESTABLISHED
            self.called_name = called_name

    @property
    def message_pending(self) -> bool:
        """True from a MessageReceived until the caller's send() answers it."""
        return self._pending is not None

    # -- the caller's side -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the peer; b"" when the peer closed its side.

        With NCB framing each call is one whole SMB. Input over MAX_BUFFERED_BYTES (a peer
        that does not wait for replies) ends the session with a CloseConnection event.
        """
        if self.state is SessionState.CLOSED:
            return
        if not data:
            self._peer_closed = True
        elif self.framing is Framing.NCB:
            self._frames.append(bytes(data))
        else:
            self._buffer += data
        held = len(self._buffer) + sum(len(frame) for frame in self._frames)
        if held > MAX_BUFFERED_BYTES:
            self._close(f"peer sent {held} bytes without waiting for replies")

    def next_event(self) -> SessionEvent | Sentinel:
        """The next event; PAUSED while a message awaits send(); NEED_DATA for more input.

        Never raises for anything the peer sent: what cannot be read ends in an error reply
        or a CloseConnection. A bug in the machine raises.
        """
        while not self._events:
            if self.state is SessionState.CLOSED:
                return NEED_DATA
            if self._pending is not None:
                return PAUSED
            try:
                frame = self._next_frame()
                if frame is None:
                    if not self._peer_closed:
                        return NEED_DATA
                    self._close("the caller closed the session")
                    continue
                self.frames_received += 1
                self._handle_frame(*frame)
            except WireError as exc:
                # Bytes that cannot be a session packet, or an SMB without its header: no
                # reply can echo what was never there.
                self._close(str(exc))
        return self._events.popleft()

    def send(self, answer: MessageAccepted | MessageRefused) -> bytes:
        """The reply to the D0 or D6 that completed the pending message, for `answer`.

        SessionStateError when no message is pending.
        """
        request = self._pending
        if request is None:
            raise SessionStateError("no message is waiting for an answer")
        self._pending = None
        if isinstance(answer, MessageAccepted):
            return self._framed(smb.build_success_reply(request))
        return self._framed(smb.build_error_reply(request, REFUSAL_ERRORS[answer.reason]))

    # -- framing (RFC 1002 §4.3.1) ---------------------------------------------------------

    def _next_frame(self) -> tuple[int, bytes] | None:
        """The next whole frame's type and payload, or None until more bytes arrive."""
        if self.framing is Framing.NCB:
            return (nbss.SESSION_MESSAGE, self._frames.popleft()) if self._frames else None
        return nbss.take_frame(self._buffer, limits.MAX_SESSION_FRAME)

    def _framed(self, reply: bytes) -> bytes:
        """An SMB reply as this session carries it."""
        return reply if self.framing is Framing.NCB else nbss.session_message(reply)

    def _handle_frame(self, packet_type: int, payload: bytes) -> None:
        handler = self._FRAME_HANDLERS.get((self.state, packet_type))
        if handler is None:
            kind = nbss.SESSION_PACKET_TYPES[packet_type]
            self._close(f"{kind} is not expected from a caller in state {self.state.value}")
            return
        handler(self, payload)

    def _close(self, reason: str) -> None:
        self.state = SessionState.CLOSED
        self._buffer.clear()
        self._frames.clear()
        self._group = None
        self._events.append(CloseConnection(reason))

    # -- session packets (RFC 1002 §4.3.2-4.3.7) -------------------------------------------

    def _on_session_request(self, payload: bytes) -> None:
        try:
            called, _ = nbss.parse_session_request_body(payload)
        except WireError:
            self._events.append(SendData(nbss.negative_response(nbss.UNSPECIFIED_ERROR)))
            self._close("SESSION REQUEST names do not decode")
            return
        if not self.directory.is_local(called):
            # RFC 1002 §4.3.4; smbclient then retries with *SMBSERVER<20>.
            self._events.append(SendData(nbss.negative_response(nbss.CALLED_NAME_NOT_PRESENT)))
            self._close(f"called name {called} not present")
            return
        self.state = SessionState.ESTABLISHED
        self.called_name = called
        self._events.append(SendData(nbss.positive_response()))

    def _on_first_session_message(self, payload: bytes) -> None:
        if self.require_session_request:
            self._close("SMB before a SESSION REQUEST")
            return
        # smbclient -M on a port other than 139 sends its D5 straight away (PROTOCOL.md §4).
        self.state = SessionState.ESTABLISHED
        self._on_session_message(payload)

    def _on_keep_alive(self, payload: bytes) -> None:
        pass  # RFC 1002 §4.3.7: the receiver discards it; no reply.

    def _on_session_message(self, payload: bytes) -> None:
        if not payload:
            self._events.append(Dropped("empty SESSION MESSAGE"))
            return
        header = smb.parse_header(payload)
        if header.Flags & smb.SMB_FLAGS_REPLY:
            # Answering a reply could start a loop with a peer as strict as we are.
            self._events.append(Dropped(f"reply to {smb.command_name(header.Command)}"))
            return
        handler = self._COMMAND_HANDLERS.get(header.Command)
        if handler is None:
            # D1-D4 bodies are unconfirmed (PROTOCOL.md §4); NEGOTIATE and the rest are not ours.
            name = smb.command_name(header.Command)
            self._refuse(header, smb.ERROR_UNKNOWN_SMB, f"{name} is not served")
            return
        try:
            body = smb.parse_request(header.Command, payload[smb.SMB_HEADER_LENGTH :])
        except WireError as exc:
            self._refuse(header, smb.ERROR_INVALID_PARAMETER, str(exc))
            return
        handler(self, header, body)

    # -- SMB message commands ([MS-MSRP] §2.2.3, §3.2.4.4) ---------------------------------

    def _on_send_message(self, header: SMBHeader, body: MessageRequest) -> None:
        if not self._names_acceptable(header, body.OriginatorName, body.DestinationName):
            return
        text = body.Data
        # Blocks over MAX_BLOCK_TEXT_BYTES are taken (senders exceed it); only the total counts.
        if len(text) > limits.MAX_TEXT_BYTES:
            reason = f"D0 text of {len(text)} bytes is over the limit"
            self._refuse(header, smb.ERROR_NO_ROOM, reason)
            return
        self._message(header, body.OriginatorName, body.DestinationName, text)

    def _on_send_start(self, header: SMBHeader, body: MessageRequest) -> None:
        if not self._names_acceptable(header, body.OriginatorName, body.DestinationName):
            return
        if self._group is not None:
            # smbd, too, drops an unfinished group when a new D5 comes.
            group = self._group.message_group_id
            self._events.append(Dropped(f"message group {group} never ended; discarded"))
        group_id = self._next_group_id
        self._next_group_id = (group_id + 1) % (MAX_MESSAGE_GROUP_ID + 1)
        self._group = _MessageGroup(group_id, body.OriginatorName, body.DestinationName)
        self._reply(smb.build_success_reply(header, group_id))

    def _on_send_text(self, header: SMBHeader, body: MessageRequest) -> None:
        group = self._group_for(body.MessageGroupId)
        if group is None:
            self._refuse_out_of_group(header, "D7", body.MessageGroupId)
            return
        block = body.Data
        if len(group.text) + len(block) > limits.MAX_TEXT_BYTES:
            self._group = None
            reason = (
                f"message group {group.message_group_id} is over {limits.MAX_TEXT_BYTES} "
                "text bytes; discarded"
            )
            self._refuse(header, smb.ERROR_NO_ROOM, reason)
            return
        group.text += block
        self._reply(smb.build_success_reply(header))

    def _on_send_end(self, header: SMBHeader, body: MessageRequest) -> None:
        group = self._group_for(body.MessageGroupId)
        if group is None:
            self._refuse_out_of_group(header, "D6", body.MessageGroupId)
            return
        self._group = None
        self._message(header, group.sender, group.recipient, bytes(group.text))

    # -- helpers for the handlers ----------------------------------------------------------

    def _names_acceptable(self, header: SMBHeader, sender: bytes, recipient: bytes) -> bool:
        """False, with the refusal queued, when From or To is too long, or, with no session
        request, To is not ours."""
        for label, value in (("From", sender), ("To", recipient)):
            if len(value) > limits.MAX_FIELD_BYTES:
                reason = f"{label} field of {len(value)} bytes is over {limits.MAX_FIELD_BYTES}"
                self._refuse(header, smb.ERROR_INVALID_PARAMETER, reason)
                return False
        if self.called_name is None:
            # No session request named the alias, so To is the only address there is.
            alias = recipient_name(recipient, self.codepage)
            if alias is None or not self.directory.is_local(alias):
                # ERRmsgoff, "not receiving messages": true of this name on this host.
                reason = f"To {recipient!r} is not an alias of ours"
                self._refuse(header, smb.ERROR_MESSAGING_OFF, reason)
                return False
        return True

    def _group_for(self, message_group_id: int) -> _MessageGroup | None:
        if self._group is None or self._group.message_group_id != message_group_id:
            return None
        return self._group

    def _refuse_out_of_group(self, header: SMBHeader, command: str, group: int) -> None:
        # smbd answers a D7/D6 with no D5 with NT_STATUS_INVALID_PARAMETER (DOS form
        # ERRDOS/ERRinvalidparam for clients that did not ask for NT status); so do we.
        reason = f"{command} for message group {group}, which no D5 opened"
        self._refuse(header, smb.ERROR_INVALID_PARAMETER, reason)

    def _message(self, request: SMBHeader, sender: bytes, recipient: bytes, text: bytes) -> None:
        if not recipient and self.called_name is not None:
            recipient = self.called_name.name
        self._pending = request
        self._events.append(MessageReceived(sender, recipient, text, path="session"))

    def _refuse(self, header: SMBHeader, error: smb.SMBError, reason: str) -> None:
        self._events.append(Dropped(f"{reason}: answered {error}"))
        self._reply(smb.build_error_reply(header, error))

    def _reply(self, reply: bytes) -> None:
        self._events.append(SendData(self._framed(reply)))

    # -- the state machine, as tables ------------------------------------------------------

    _FRAME_HANDLERS: ClassVar[dict[tuple[SessionState, int], Callable[..., None]]] = {
        (SessionState.AWAITING_SESSION, nbss.SESSION_REQUEST): _on_session_request,
        (SessionState.AWAITING_SESSION, nbss.SESSION_MESSAGE): _on_first_session_message,
        (SessionState.AWAITING_SESSION, nbss.SESSION_KEEP_ALIVE): _on_keep_alive,
        (SessionState.ESTABLISHED, nbss.SESSION_MESSAGE): _on_session_message,
        (SessionState.ESTABLISHED, nbss.SESSION_KEEP_ALIVE): _on_keep_alive,
    }
    """Which session packet is handled in which state. Any other pair ends the session: a
    second SESSION REQUEST (smbd: "multiple session request not permitted"), or a response
    packet from a caller."""

    _COMMAND_HANDLERS: ClassVar[dict[int, Callable[..., None]]] = {
        smb.SMB_COM_SEND_MESSAGE: _on_send_message,
        smb.SMB_COM_SEND_START_MB_MESSAGE: _on_send_start,
        smb.SMB_COM_SEND_TEXT_MB_MESSAGE: _on_send_text,
        smb.SMB_COM_SEND_END_MB_MESSAGE: _on_send_end,
    }
    """The SMB commands served; every other one is answered ERRSRV/ERRunknownsmb."""
