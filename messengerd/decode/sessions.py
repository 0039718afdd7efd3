"""Session messages in a capture, TCP 139 (RFC 1002 §4.3, [MS-MSRP] §2.2.3).

The caller's bytes go through SessionMachine, exactly as the daemon takes them, with a
directory that owns every name. The receiver's replies in the capture, read with the same
struct codecs, say how each message was answered: a message is shown once its D0 or D6 reply
comes, or as unanswered when none comes within REPLY_TIMEOUT.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from messengerd.core import limits
from messengerd.decode.capture import Segment
from messengerd.decode.events import (
    MAX_FRAMES_PER_EVENT,
    CaptureEvent,
    Flow,
    endpoint,
    message_event,
    name_text,
)
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    EveryName,
    MessageAccepted,
    MessageReceived,
    SendData,
)
from messengerd.protocol.session import SessionMachine, SessionState
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError

MAX_CONNECTIONS = limits.MAX_SESSIONS
"""TCP connections followed at once; the oldest is given up to admit a new one."""
REPLY_TIMEOUT = 10.0
"""Capture seconds after which a message with no reply is shown as unanswered: no sender waits
longer for a reply. Windows' NetBT gave up on a session after about 10 s, and messengerd's own
sender waits as long (messengerd.sender.SESSION_TIMEOUT)."""

_SMB_AT = nbss.NBSS_HEADER_LENGTH
"""Where the SMB starts in a SESSION MESSAGE frame."""
_BODY_AT = _SMB_AT + smb.SMB_HEADER_LENGTH
"""Where the message command body starts in a SESSION MESSAGE frame."""
_GROUP_AT = _BODY_AT + 1
"""Where a D7's or D6's MessageGroupId sits in its frame: after WordCount ([MS-MSRP] §2.2.3.3.1,
§2.2.3.4.1)."""
_MESSAGE_GROUP_ID = struct.Struct("<H")
_GROUP_COMMANDS = (smb.SMB_COM_SEND_TEXT_MB_MESSAGE, smb.SMB_COM_SEND_END_MB_MESSAGE)
"""The requests that name a message group."""


@dataclass
class _Stream:
    """One direction's bytes not yet a whole session packet (RFC 1002 §4.3.1)."""

    buffer: bytearray = field(default_factory=bytearray)
    broken: bool = False
    """The bytes stopped making sense as frames; nothing more is read from this direction."""


def _take_frames(stream: _Stream, data: bytes) -> list[bytes]:
    """Add `data` to `stream`; the whole frames now in it, at most MAX_SESSION_FRAME each."""
    if stream.broken:
        return []
    stream.buffer += data
    frames = []
    while len(stream.buffer) >= nbss.NBSS_HEADER_LENGTH:
        try:
            _, length = nbss.frame_header(stream.buffer)
        except WireError:
            length = limits.MAX_SESSION_FRAME + 1
        if length > limits.MAX_SESSION_FRAME:
            stream.broken = True
            stream.buffer.clear()
            break
        end = nbss.NBSS_HEADER_LENGTH + length
        if len(stream.buffer) < end:
            break
        frames.append(bytes(stream.buffer[:end]))
        del stream.buffer[:end]
    return frames


@dataclass(eq=False)
class _PendingMessage:
    """A message the caller completed, waiting for the receiver's reply to its D0 or D6."""

    event: CaptureEvent


@dataclass
class _Connection:
    """One TCP session: the caller's bytes through a SessionMachine, the replies framed apart."""

    client: Flow
    machine: SessionMachine
    frames: list[int] = field(default_factory=list)
    """Frames since the last message completed: the next message's exchange."""
    requests: _Stream = field(default_factory=lambda: _Stream())
    replies: _Stream = field(default_factory=lambda: _Stream())
    group_id: int | None = None
    """The MessageGroupId the machine gave the caller's open multi-block message."""
    pending: deque[_PendingMessage] = field(default_factory=deque)


def _unanswered(pending: _PendingMessage) -> CaptureEvent:
    """The event of a message the capture shows no reply to."""
    pending.event.details["reply"] = None
    pending.event.summary += "  (no reply in the capture)"
    return pending.event


def _in_open_group(connection: _Connection, frame: bytes) -> bytes:
    """`frame`, a D7 or D6 carrying the MessageGroupId of the group the machine opened.

    The caller uses the id the real receiver gave it, which need not be the one our machine
    gave (Windows counts from its own session numbers). The receiver's reply in the capture
    still says whether it took the block. A frame the machine cannot read is left as it is:
    the machine refuses it whatever group it names.
    """
    if connection.group_id is None or frame[0] != nbss.SESSION_MESSAGE:
        return frame
    try:
        header = smb.parse_header(frame[_SMB_AT:])
        if header.Flags & smb.SMB_FLAGS_REPLY or header.Command not in _GROUP_COMMANDS:
            return frame
        body = smb.parse_request(header.Command, frame[_BODY_AT:])
    except WireError:
        return frame
    if body.MessageGroupId == connection.group_id:
        return frame
    group = _MESSAGE_GROUP_ID.pack(connection.group_id)
    return frame[:_GROUP_AT] + group + frame[_GROUP_AT + _MESSAGE_GROUP_ID.size :]


def _note_group(connection: _Connection, reply: bytes) -> None:
    """Remember the MessageGroupId the machine's D5 reply gave."""
    if reply[0] != nbss.SESSION_MESSAGE:
        return
    try:
        header = smb.parse_header(reply[_SMB_AT:])
    except WireError:
        return
    if header.Command != smb.SMB_COM_SEND_START_MB_MESSAGE:
        return
    if not header.Flags & smb.SMB_FLAGS_REPLY:
        return
    group_id = smb.parse_send_start_mb_message_response(reply[_BODY_AT:])
    if group_id is not None:
        connection.group_id = group_id


def _refusal(
    connection: _Connection, segment: Segment, kind: str, summary: str, details: dict[str, str]
) -> CaptureEvent:
    """The event of the receiver's refusal in `segment`: its frames are the exchange's so far."""
    src, sport, dst, dport = connection.client
    frames, connection.frames = [*connection.frames, segment.frame], []
    return CaptureEvent(
        frames=frames,
        time=segment.time,
        kind=kind,
        src=endpoint(dst, dport),
        dst=endpoint(src, sport),
        summary=summary,
        details=details,
    )


class SessionDecoder:
    """Session segments in capture order in, message and refusal events out.

    A message's event waits for the receiver's reply: `give_up(now)` returns those whose reply
    did not come within REPLY_TIMEOUT of capture time, `finish()` every one still waiting.
    """

    def __init__(self, codepage: str, ports: frozenset[int]) -> None:
        self.codepage = codepage
        self.ports = ports
        self._connections: dict[frozenset[tuple[str, int]], _Connection] = {}
        self._awaiting: deque[tuple[float, _Connection, _PendingMessage]] = deque()
        """Messages waiting for their reply, oldest first, with the capture time to give up."""

    def events(self, segment: Segment) -> list[CaptureEvent]:
        """The events `segment` completes: refusals at once, messages with their reply."""
        key = frozenset({(segment.src, segment.sport), (segment.dst, segment.dport)})
        from_caller = segment.dport in self.ports
        connection = self._connections.get(key)
        events: list[CaptureEvent] = []
        if from_caller and (connection is None or connection.machine.state is SessionState.CLOSED):
            if connection is not None:
                events += self._unanswered(connection)
            connection = self._open(key, segment)
            events += self._evict()
        if connection is None:
            return events
        if from_caller and (segment.src, segment.sport) == connection.client[:2]:
            events += self._from_caller(connection, segment)
        else:
            events += self._from_receiver(connection, segment)
        return events

    def give_up(self, now: float) -> list[CaptureEvent]:
        """The messages whose reply did not come within REPLY_TIMEOUT, as unanswered."""
        events = []
        while self._awaiting and self._awaiting[0][0] < now:
            _, connection, pending = self._awaiting.popleft()
            if pending in connection.pending:
                connection.pending.remove(pending)
                events.append(_unanswered(pending))
        return events

    def finish(self) -> list[CaptureEvent]:
        """Every message still waiting for a reply, as unanswered; the connections end."""
        events = []
        for connection in self._connections.values():
            events += self._unanswered(connection)
        self._connections.clear()
        return events

    def _open(self, key: frozenset[tuple[str, int]], segment: Segment) -> _Connection:
        self._connections.pop(key, None)
        connection = _Connection(
            client=(segment.src, segment.sport, segment.dst, segment.dport),
            machine=SessionMachine(EveryName(), codepage=self.codepage),
        )
        self._connections[key] = connection
        return connection

    def _evict(self) -> list[CaptureEvent]:
        events: list[CaptureEvent] = []
        while len(self._connections) > MAX_CONNECTIONS:
            oldest = next(iter(self._connections))
            events += self._unanswered(self._connections.pop(oldest))
        return events

    def _from_caller(self, connection: _Connection, segment: Segment) -> list[CaptureEvent]:
        if len(connection.frames) < MAX_FRAMES_PER_EVENT:
            connection.frames.append(segment.frame)
        machine = connection.machine
        for frame in _take_frames(connection.requests, segment.payload):
            machine.receive_data(_in_open_group(connection, frame))
            while (event := machine.next_event()) is not NEED_DATA:
                if event is PAUSED:
                    # The machine's own reply is not sent anywhere: the receiver's reply in
                    # the capture says how the message was taken (_from_receiver).
                    machine.send(MessageAccepted())
                elif isinstance(event, SendData):
                    _note_group(connection, event.data)
                elif isinstance(event, MessageReceived):
                    message = message_event(
                        event, segment, connection.frames, self.codepage, client=connection.client
                    )
                    pending = _PendingMessage(message)
                    connection.pending.append(pending)
                    self._awaiting.append((segment.time + REPLY_TIMEOUT, connection, pending))
                    connection.frames = []
        return []

    def _from_receiver(self, connection: _Connection, segment: Segment) -> list[CaptureEvent]:
        events: list[CaptureEvent] = []
        for frame in _take_frames(connection.replies, segment.payload):
            packet_type, _ = nbss.frame_header(frame)
            events += self._reply(connection, segment, packet_type, frame)
        return events

    def _reply(
        self, connection: _Connection, segment: Segment, packet_type: int, frame: bytes
    ) -> list[CaptureEvent]:
        if packet_type == nbss.NEGATIVE_SESSION_RESPONSE and len(frame) > nbss.NBSS_HEADER_LENGTH:
            called = connection.machine.called_name
            name = name_text(called, self.codepage) if called else "?"
            reason = nbss.NEGATIVE_RESPONSE_ERRORS.get(frame[4], f"error 0x{frame[4]:02X}")
            details = {"name": name, "reason": reason}
            return [_refusal(connection, segment, "session-refused", f"{name}  {reason}", details)]
        if packet_type != nbss.SESSION_MESSAGE:
            return []
        try:
            header = smb.parse_header(frame[_SMB_AT:])
        except WireError:
            return []
        if not header.Flags & smb.SMB_FLAGS_REPLY:
            return []
        status = smb.describe_status(header)
        if header.Command in (smb.SMB_COM_SEND_MESSAGE, smb.SMB_COM_SEND_END_MB_MESSAGE):
            if not connection.pending:
                return []
            event = connection.pending.popleft().event
            event.add_frame(segment.frame)
            event.details["reply"] = status
            if status != "success":
                event.summary += f"  (refused: {status})"
            return [event]
        if status == "success" or header.Command not in smb.MESSAGE_COMMANDS:
            return []
        command = smb.command_name(header.Command)
        details = {"command": command, "reply": status}
        return [_refusal(connection, segment, "smb-error", f"{command}  {status}", details)]

    @staticmethod
    def _unanswered(connection: _Connection) -> list[CaptureEvent]:
        events = [_unanswered(pending) for pending in connection.pending]
        connection.pending.clear()
        return events
