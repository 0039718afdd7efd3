"""The capture decoder: segments in capture order in, events out, each segment sent to the
decoder of its service and a second copy of a packet joined to the first.

A capture taken on both ends of a veth pair (Linux cooked, `-i any`) holds most packets twice;
a segment identical to one seen within CAPTURE_COPY_WINDOW is taken as that packet's second
copy: its frame number joins the first copy's event and its bytes are not fed again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from messengerd.config.options import (
    DATAGRAM_SERVICE_PORT,
    NAME_SERVICE_PORT,
    RPC_PORT,
    SESSION_SERVICE_PORT,
)
from messengerd.decode.capture import Segment, read_segments
from messengerd.decode.datagrams import DatagramDecoder
from messengerd.decode.events import CaptureEvent
from messengerd.decode.nameservice import name_service_events
from messengerd.decode.rpc import RpcDecoder
from messengerd.decode.sessions import SessionDecoder
from messengerd.wire.text import DEFAULT_CODEPAGE

CAPTURE_COPY_WINDOW = 0.00001
"""Seconds within which an identical segment is the same packet captured on a second
interface. In samba-smbclient-nmbd-netns.pcap the 48 copies (same IP ID) are 0-5 µs apart and
the closest distinct identical packets (nmbd answering twice, registration repeats) 23 µs."""
MAX_RECENT_SEGMENTS = 64
"""Segments remembered for spotting copies; copies follow their original at once."""


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
        rpc_ports: Collection[int] = (RPC_PORT,),
    ) -> None:
        self.codepage = codepage
        self.name_ports = frozenset(name_ports)
        self.datagram_ports = frozenset(datagram_ports)
        self.session_ports = frozenset(session_ports)
        self.rpc_ports = frozenset(rpc_ports)
        self._datagrams = DatagramDecoder(codepage)
        self._rpc = RpcDecoder(codepage)
        self._sessions = SessionDecoder(codepage, self.session_ports)
        self._recent: deque[tuple[float, tuple[Any, ...], list[CaptureEvent]]] = deque(
            maxlen=MAX_RECENT_SEGMENTS
        )
        self._held: list[tuple[float, CaptureEvent]] = []
        """Events with the time of the segment that made them, kept for its copies."""

    def feed(self, segment: Segment) -> list[CaptureEvent]:
        """Take the next segment of the capture; the events no copy can join any more."""
        ready = self._release(segment.time)
        self._held += [(segment.time, event) for event in self._sessions.give_up(segment.time)]
        if not segment.payload:
            return ready
        key = (
            segment.transport, segment.src, segment.sport, segment.dst, segment.dport,
            segment.payload,
        )  # fmt: skip
        for seen_at, seen_key, events in self._recent:
            if seen_key == key and segment.time - seen_at <= CAPTURE_COPY_WINDOW:
                for event in events:
                    event.add_frame(segment.frame)
                return ready
        events = self._dispatch(segment)
        self._recent.append((segment.time, key, events))
        self._held += [(segment.time, event) for event in events]
        return ready

    def finish(self) -> list[CaptureEvent]:
        """Everything still held, and the messages whose reply the capture does not show."""
        self._held += [(0.0, event) for event in self._sessions.finish()]
        return self._release(float("inf"))

    def _release(self, now: float) -> list[CaptureEvent]:
        ready = [event for made, event in self._held if now - made > CAPTURE_COPY_WINDOW]
        if ready:
            self._held = [held for held in self._held if now - held[0] <= CAPTURE_COPY_WINDOW]
        return ready

    def _dispatch(self, segment: Segment) -> list[CaptureEvent]:
        ports = {segment.sport, segment.dport}
        if segment.transport == "udp" and ports & self.name_ports:
            return name_service_events(segment, self.codepage)
        if segment.transport == "udp" and segment.dport in self.datagram_ports:
            return self._datagrams.events(segment)
        if segment.transport == "tcp" and ports & self.session_ports:
            return self._sessions.events(segment)
        if segment.transport == "udp" and segment.dport in self.rpc_ports:
            return self._rpc.events(segment)
        return []


def decode_segments(segments: Iterable[Segment], **options: Any) -> Iterator[CaptureEvent]:
    """The events in `segments`, in the order they complete; options as CaptureDecoder's."""
    decoder = CaptureDecoder(**options)
    for segment in segments:
        yield from decoder.feed(segment)
    yield from decoder.finish()


def decode_capture(path: str | Path, **options: Any) -> Iterator[CaptureEvent]:
    """The events in a pcap or pcapng file; options as CaptureDecoder's."""
    return decode_segments(read_segments(path), **options)
