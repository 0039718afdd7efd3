"""What `messengerd decode` prints: one CaptureEvent per message or name service event, as a
line of text or a JSON object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from messengerd.core.message import Message
from messengerd.decode.capture import Segment
from messengerd.protocol.events import MessageReceived
from messengerd.wire.names import NetBIOSName

MAX_FRAMES_PER_EVENT = 1024
"""Frame numbers kept for one event; a message that spans more lists the first ones."""

Flow = tuple[str, int, str, int]
"""A TCP connection as its caller opened it: source address and port, destination and port."""


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

    def add_frame(self, frame: int) -> None:
        """Count `frame` among the event's frames, up to MAX_FRAMES_PER_EVENT."""
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


def endpoint(address: str, port: int) -> str:
    """`192.0.2.1:139`."""
    return f"{address}:{port}"


def name_text(name: NetBIOSName, codepage: str) -> str:
    """`RECVR<03>`; the node status wildcard as `*`; a scope after a dot."""
    if name.name.rstrip(b"\x00 ") == b"*":
        return "*"
    shown = "".join(
        f"<{ord(char):02X}>" if ord(char) < 0x20 else char
        for char in name.name.decode(codepage, errors="replace")
    )
    text = f"{shown}<{name.suffix:02X}>"
    return f"{text}.{name.scope.decode('ascii', errors='replace')}" if name.scope else text


def message_event(
    event: MessageReceived,
    segment: Segment,
    frames: list[int],
    codepage: str,
    *,
    client: Flow | None = None,
) -> CaptureEvent:
    """The event of a message a machine took from `segment`; `client` for a TCP session's."""
    src, sport, dst, dport = client or (segment.src, segment.sport, segment.dst, segment.dport)
    message = replace(
        Message.from_wire(
            event.sender,
            event.recipient,
            event.text,
            path=event.path,
            peer=endpoint(src, sport),
            codepage=codepage,
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
        src=endpoint(src, sport),
        dst=endpoint(dst, dport),
        summary=f"{message.sender} -> {message.recipient}  {text}",
        details=details,
    )
