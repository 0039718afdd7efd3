"""Messenger messages and name service events in a packet capture (PROTOCOL.md §2-5).

Nothing here parses bytes itself: TCP streams go through SessionMachine, UDP 138 through
DatagramService, UDP 137 through parse_nbns, exactly as the daemon takes them, with a
directory that owns every name so that every message in the capture comes out. The server's
replies are read with the same NBSS and SMB layers, to say how each message was answered.

A capture taken on both ends of a veth pair (Linux cooked, `-i any`) holds most packets twice;
a segment identical to one seen within CAPTURE_COPY_WINDOW is taken as that packet's second
copy: its frame number joins the first copy's event and its bytes are not fed again.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from messengerd.config.options import DATAGRAM_SERVICE_PORT, NAME_SERVICE_PORT, SESSION_SERVICE_PORT
from messengerd.core import limits
from messengerd.core.message import Message
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    EveryName,
    MessageAccepted,
    MessageReceived,
    SendData,
)
from messengerd.protocol.session import SessionMachine, SessionState
from messengerd.sender import SESSION_TIMEOUT, describe_status
from messengerd.wire import nbss, smb
from messengerd.wire.capture import Segment, read_segments
from messengerd.wire.datagram import DirectDatagram, parse_datagram
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    ACT_ERR,
    CFT_ERR,
    FMT_ERR,
    IMP_ERR,
    NAM_ERR,
    RFS_ERR,
    SRV_ERR,
    NameQuery,
    NameRefresh,
    NameRegistration,
    NameRelease,
    NameServicePacket,
    NodeStatus,
    NodeStatusQuery,
    QueryResponse,
    RegistrationResponse,
    ReleaseResponse,
    WaitForAcknowledgement,
    parse_nbns,
)
from messengerd.wire.text import DEFAULT_CODEPAGE

CAPTURE_COPY_WINDOW = 0.00001
"""Seconds within which an identical segment is the same packet captured on a second
interface. In samba-smbclient-nmbd-netns.pcap the 48 copies (same IP ID) are 0-5 µs apart and
the closest distinct identical packets (nmbd answering twice, registration repeats) 23 µs."""
MAX_RECENT_SEGMENTS = 64
"""Segments remembered for spotting copies; copies follow their original at once."""
MAX_CONNECTIONS = limits.MAX_SESSIONS
"""TCP connections followed at once; the oldest is given up to admit a new one."""
REPLY_TIMEOUT = SESSION_TIMEOUT
"""Capture seconds after which a message with no reply is shown as unanswered: a sender
waits no longer (messengerd.sender.SESSION_TIMEOUT)."""
MAX_FRAMES_PER_EVENT = 1024
"""Frame numbers kept for one event; a message that spans more lists the first ones."""

_RCODES = {
    FMT_ERR: "FMT_ERR",
    SRV_ERR: "SRV_ERR",
    NAM_ERR: "NAM_ERR",
    IMP_ERR: "IMP_ERR",
    RFS_ERR: "RFS_ERR",
    ACT_ERR: "ACT_ERR",
    CFT_ERR: "CFT_ERR",
}


@dataclass
class CaptureEvent:
    """One message or name service event, with the frames it was seen in."""

    frames: list[int]
    time: float
    kind: str
    src: str
    dst: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def _add_frame(self, frame: int) -> None:
        if frame not in self.frames and len(self.frames) < MAX_FRAMES_PER_EVENT:
            self.frames.append(frame)

    def frame_range(self) -> str:
        """`12` or `102-107`."""
        first, last = min(self.frames), max(self.frames)
        return str(first) if first == last else f"{first}-{last}"

    def line(self) -> str:
        """`frame 102-107  session  SENDER -> RECVR  "text"`."""
        return f"frame {self.frame_range()}  {self.kind}  {self.summary}"

    def to_json(self) -> dict[str, Any]:
        """The keys `messengerd decode --json` prints."""
        return {
            "frames": sorted(self.frames),
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(),
            "kind": self.kind,
            "src": self.src,
            "dst": self.dst,
            **self.details,
        }


Flow = tuple[str, int, str, int]


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


def _endpoint(address: str, port: int) -> str:
    return f"{address}:{port}"


def _name_text(name: NetBIOSName, codepage: str) -> str:
    """`RECVR<03>`; the node status wildcard as `*`; a scope after a dot."""
    if name.name.rstrip(b"\x00 ") == b"*":
        return "*"
    shown = "".join(
        f"<{ord(char):02X}>" if ord(char) < 0x20 else char
        for char in name.name.decode(codepage, errors="replace")
    )
    text = f"{shown}<{name.suffix:02X}>"
    return f"{text}.{name.scope.decode('ascii', errors='replace')}" if name.scope else text


class CaptureDecoder:
    """Turns capture segments, in capture order, into CaptureEvents (sans-I/O, as the machines).

    `feed(segment)` returns the events now complete, `finish()` the rest. An event is held for
    CAPTURE_COPY_WINDOW after its last segment so that a second copy can still join it.
    """

    def __init__(
        self,
        *,
        codepage: str = DEFAULT_CODEPAGE,
        name_ports: Collection[int] = (NAME_SERVICE_PORT,),
        datagram_ports: Collection[int] = (DATAGRAM_SERVICE_PORT,),
        session_ports: Collection[int] = (SESSION_SERVICE_PORT,),
    ) -> None:
        self.codepage = codepage
        self.name_ports = frozenset(name_ports)
        self.datagram_ports = frozenset(datagram_ports)
        self.session_ports = frozenset(session_ports)
        self._datagrams = DatagramService(EveryName(), codepage=codepage)
        self._fragment_frames: dict[tuple[str, int], list[int]] = {}
        self._connections: dict[frozenset[tuple[str, int]], _Connection] = {}
        self._recent: deque[tuple[float, tuple[Any, ...], list[CaptureEvent]]] = deque(
            maxlen=MAX_RECENT_SEGMENTS
        )
        self._awaiting: deque[tuple[float, _Connection, _PendingMessage]] = deque()
        """Messages waiting for their reply, oldest first, with the capture time to give up."""
        self._held: list[tuple[float, CaptureEvent]] = []
        """Events with the time of the segment that made them, kept for its copies."""

    # The caller's side.

    def feed(self, segment: Segment) -> list[CaptureEvent]:
        """Take the next segment of the capture; the events no copy can join any more."""
        ready = self._release(segment.time)
        self._held += [(segment.time, event) for event in self._give_up(segment.time)]
        if not segment.payload:
            return ready
        key = (segment.transport, segment.src, segment.sport, segment.dst, segment.dport)
        key += (segment.payload,)
        for seen_at, seen_key, events in self._recent:
            if seen_key == key and segment.time - seen_at <= CAPTURE_COPY_WINDOW:
                for event in events:
                    event._add_frame(segment.frame)
                return ready
        events = self._dispatch(segment)
        self._recent.append((segment.time, key, events))
        self._held += [(segment.time, event) for event in events]
        return ready

    def finish(self) -> list[CaptureEvent]:
        """Everything still held, and the messages whose reply the capture does not show."""
        for connection in self._connections.values():
            self._held += [(0.0, event) for event in self._unanswered(connection)]
        self._connections.clear()
        return self._release(float("inf"))

    def _give_up(self, now: float) -> list[CaptureEvent]:
        """The messages whose reply did not come within REPLY_TIMEOUT, as unanswered."""
        events = []
        while self._awaiting and self._awaiting[0][0] < now:
            _, connection, pending = self._awaiting.popleft()
            if pending in connection.pending:
                connection.pending.remove(pending)
                events.append(_unanswered(pending))
        return events

    def _release(self, now: float) -> list[CaptureEvent]:
        ready = [event for made, event in self._held if now - made > CAPTURE_COPY_WINDOW]
        if ready:
            self._held = [held for held in self._held if now - held[0] <= CAPTURE_COPY_WINDOW]
        return ready

    def _dispatch(self, segment: Segment) -> list[CaptureEvent]:
        ports = {segment.sport, segment.dport}
        if segment.transport == "udp" and ports & self.name_ports:
            return self._name_service(segment)
        if segment.transport == "udp" and segment.dport in self.datagram_ports:
            return self._datagram(segment)
        if segment.transport == "tcp" and ports & self.session_ports:
            return self._session(segment)
        return []

    # UDP 137 (RFC 1002 §4.2).

    def _name_service(self, segment: Segment) -> list[CaptureEvent]:
        try:
            packet = parse_nbns(segment.payload)
        except WireError:
            return []
        name = _name_text(packet.name, self.codepage)
        kind, summary, details = self._describe_nbns(packet, segment)
        return [
            CaptureEvent(
                frames=[segment.frame],
                time=segment.time,
                kind=kind,
                src=_endpoint(segment.src, segment.sport),
                dst=_endpoint(segment.dst, segment.dport),
                summary=f"{name}  {summary}".rstrip(),
                details={"trn_id": packet.trn_id, "name": name, **details},
            )
        ]

    def _describe_nbns(
        self, packet: NameServicePacket, segment: Segment
    ) -> tuple[str, str, dict[str, Any]]:
        """The event kind, what follows the name on its line, and its JSON details."""
        if isinstance(packet, NameRegistration):
            kind = "name-overwrite" if packet.overwrite_demand else "name-registration"
            group = "  group" if packet.group else ""
            return kind, f"{packet.address}{group}", {"address": packet.address}
        if isinstance(packet, NameRelease):
            return "name-release", packet.address, {"address": packet.address}
        if isinstance(packet, NameRefresh):
            return "name-refresh", packet.address, {"address": packet.address}
        if isinstance(packet, NameQuery):
            how = "broadcast" if packet.broadcast else "unicast"
            return "name-query", f"from {segment.src} ({how})", {"broadcast": packet.broadcast}
        if isinstance(packet, NodeStatusQuery):
            return "node-status-query", f"to {segment.dst}", {}
        if isinstance(packet, QueryResponse):
            if not packet.positive:
                rcode = _RCODES.get(packet.rcode, str(packet.rcode))
                return "negative-name-query-response", rcode, {"rcode": rcode}
            addresses = [entry.address for entry in packet.entries]
            return "name-query-response", " ".join(addresses), {"addresses": addresses}
        if isinstance(packet, NodeStatus):
            names = [_name_text(entry.name, self.codepage) for entry in packet.node_names]
            return "node-status-response", " ".join(names), {"names": names}
        if isinstance(packet, RegistrationResponse):
            addresses = [entry.address for entry in packet.entries]
            if packet.positive:
                return "name-registration-response", " ".join(addresses), {"addresses": addresses}
            rcode = _RCODES.get(packet.rcode, str(packet.rcode))
            held = f"held by {' '.join(addresses)} ({rcode})"
            return "name-conflict", held, {"addresses": addresses, "rcode": rcode}
        if isinstance(packet, ReleaseResponse):
            kind = "name-release-response" if packet.positive else "negative-name-release-response"
            return kind, "", {}
        if isinstance(packet, WaitForAcknowledgement):
            return "wait-for-acknowledgement", f"{packet.ttl} s", {"ttl": packet.ttl}
        return type(packet).__name__, "", {}

    # UDP 138 (RFC 1002 §4.4, PROTOCOL.md §5).

    def _datagram(self, segment: Segment) -> list[CaptureEvent]:
        frames = [segment.frame]
        try:
            datagram = parse_datagram(segment.payload)
        except WireError:
            datagram = None
        if isinstance(datagram, DirectDatagram) and datagram.is_fragment:
            key = (datagram.source_ip, datagram.datagram_id)
            if key not in self._fragment_frames and len(self._fragment_frames) >= (
                limits.MAX_PENDING_DATAGRAMS
            ):
                del self._fragment_frames[next(iter(self._fragment_frames))]
            frames = self._fragment_frames.setdefault(key, [])
            frames.append(segment.frame)
            if not datagram.more:
                del self._fragment_frames[key]
        datagrams = self._datagrams
        datagrams.receive_data(segment.payload, peer=(segment.src, segment.sport), now=segment.time)
        found = []
        while (event := datagrams.next_event()) is not NEED_DATA:
            if isinstance(event, MessageReceived):
                found.append(self._message_event(event, segment, list(frames)))
        return found

    def _message_event(
        self,
        event: MessageReceived,
        segment: Segment,
        frames: list[int],
        *,
        client: Flow | None = None,
    ) -> CaptureEvent:
        src, sport, dst, dport = client or (segment.src, segment.sport, segment.dst, segment.dport)
        message = replace(
            Message.from_wire(
                event.sender,
                event.recipient,
                event.text,
                path=event.path,
                peer=_endpoint(src, sport),
                codepage=self.codepage,
            ),
            received_at=datetime.fromtimestamp(segment.time, UTC),
        )
        text = json.dumps(message.text, ensure_ascii=False)
        details = {
            "path": message.path,
            "from": message.sender,
            "to": message.recipient,
            "text": message.text,
        }
        return CaptureEvent(
            frames=frames,
            time=segment.time,
            kind=message.path,
            src=_endpoint(src, sport),
            dst=_endpoint(dst, dport),
            summary=f"{message.sender} -> {message.recipient}  {text}",
            details=details,
        )

    # TCP 139 (RFC 1002 §4.3, [MS-MSRP] §2.2.3).

    def _session(self, segment: Segment) -> list[CaptureEvent]:
        key = frozenset({(segment.src, segment.sport), (segment.dst, segment.dport)})
        from_caller = segment.dport in self.session_ports
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
            machine.receive_data(self._in_open_group(connection, frame))
            while (event := machine.next_event()) is not NEED_DATA:
                if event is PAUSED:
                    # The machine's own reply is not sent anywhere: the receiver's reply in
                    # the capture says how the message was taken (_from_receiver).
                    machine.send(MessageAccepted())
                elif isinstance(event, SendData):
                    self._note_group(connection, event.data)
                elif isinstance(event, MessageReceived):
                    message = self._message_event(
                        event, segment, connection.frames, client=connection.client
                    )
                    pending = _PendingMessage(message)
                    connection.pending.append(pending)
                    self._awaiting.append((segment.time + REPLY_TIMEOUT, connection, pending))
                    connection.frames = []
        return []

    @staticmethod
    def _in_open_group(connection: _Connection, frame: bytes) -> bytes:
        """`frame`, a D7 or D6 carrying the MessageGroupId of the group the machine opened.

        The caller uses the id the real receiver gave it, which need not be the one our machine
        gave (Windows counts from its own session numbers). The receiver's reply in the capture
        still says whether it took the block.
        """
        if connection.group_id is None or frame[0] != nbss.SESSION_MESSAGE:
            return frame
        try:
            packet = nbss.parse_frame(frame)
        except WireError:
            return frame
        body = packet.getlayer(smb.SMBSendTextMBMessageRequest) or packet.getlayer(
            smb.SMBSendEndMBMessageRequest
        )
        if body is None or body.MessageGroupId == connection.group_id:
            return frame
        body.MessageGroupId = connection.group_id
        return bytes(packet)

    @staticmethod
    def _note_group(connection: _Connection, reply: bytes) -> None:
        """Remember the MessageGroupId the machine's D5 reply gave."""
        try:
            header = smb.smb_of(nbss.parse_frame(reply))
        except WireError:
            return
        body = header.getlayer(smb.SMBSendStartMBMessageResponse)
        if body is not None and body.WordCount >= 1:
            connection.group_id = body.MessageGroupId

    def _from_receiver(self, connection: _Connection, segment: Segment) -> list[CaptureEvent]:
        events: list[CaptureEvent] = []
        for frame in _take_frames(connection.replies, segment.payload):
            packet_type, _ = nbss.frame_header(frame)
            events += self._reply(connection, segment, packet_type, frame)
        return events

    def _reply(
        self, connection: _Connection, segment: Segment, packet_type: int, frame: bytes
    ) -> list[CaptureEvent]:
        src, sport, dst, dport = connection.client
        if packet_type == nbss.NEGATIVE_SESSION_RESPONSE and len(frame) > nbss.NBSS_HEADER_LENGTH:
            called = connection.machine.called_name
            name = _name_text(called, self.codepage) if called else "?"
            reason = nbss.NEGATIVE_RESPONSE_ERRORS.get(frame[4], f"error 0x{frame[4]:02X}")
            frames, connection.frames = [*connection.frames, segment.frame], []
            return [
                CaptureEvent(
                    frames=frames,
                    time=segment.time,
                    kind="session-refused",
                    src=_endpoint(dst, dport),
                    dst=_endpoint(src, sport),
                    summary=f"{name}  {reason}",
                    details={"name": name, "reason": reason},
                )
            ]
        if packet_type != nbss.SESSION_MESSAGE:
            return []
        try:
            header = smb.smb_of(nbss.parse_frame(frame))
        except WireError:
            return []
        if not smb.is_reply(header):
            return []
        status = describe_status(header)
        if header.Command in (smb.SMB_COM_SEND_MESSAGE, smb.SMB_COM_SEND_END_MB_MESSAGE):
            if not connection.pending:
                return []
            event = connection.pending.popleft().event
            event._add_frame(segment.frame)
            event.details["reply"] = status
            if status != "success":
                event.summary += f"  (refused: {status})"
            return [event]
        if status == "success" or header.Command not in smb.MESSAGE_COMMANDS:
            return []
        frames, connection.frames = [*connection.frames, segment.frame], []
        command = smb.command_name(header.Command)
        return [
            CaptureEvent(
                frames=frames,
                time=segment.time,
                kind="smb-error",
                src=_endpoint(dst, dport),
                dst=_endpoint(src, sport),
                summary=f"{command}  {status}",
                details={"command": command, "reply": status},
            )
        ]

    @staticmethod
    def _unanswered(connection: _Connection) -> list[CaptureEvent]:
        events = [_unanswered(pending) for pending in connection.pending]
        connection.pending.clear()
        return events


def _unanswered(pending: _PendingMessage) -> CaptureEvent:
    """The event of a message the capture shows no reply to."""
    pending.event.details["reply"] = None
    pending.event.summary += "  (no reply in the capture)"
    return pending.event


def decode_segments(segments: Iterable[Segment], **options: Any) -> Iterator[CaptureEvent]:
    """The events in `segments`, in the order they complete; options as CaptureDecoder's."""
    decoder = CaptureDecoder(**options)
    for segment in segments:
        yield from decoder.feed(segment)
    yield from decoder.finish()


def decode_capture(path: str | Path, **options: Any) -> Iterator[CaptureEvent]:
    """The events in a pcap or pcapng file; options as CaptureDecoder's."""
    return decode_segments(read_segments(path), **options)
