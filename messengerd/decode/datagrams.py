"""Mailslot messages in a capture, UDP 138 (RFC 1002 §4.4, PROTOCOL.md §5): datagrams go
through DatagramService, fragments reassembled, exactly as the daemon takes them."""

from __future__ import annotations

from messengerd.core import limits
from messengerd.decode.capture import Segment
from messengerd.decode.events import CaptureEvent, message_event
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import NEED_DATA, EveryName, MessageReceived
from messengerd.wire.datagram import DirectDatagram, parse_datagram
from messengerd.wire.errors import WireError


class DatagramDecoder:
    """Datagram segments in capture order in, message events out, with every frame a
    fragmented message came in."""

    def __init__(self, codepage: str) -> None:
        self.codepage = codepage
        self._service = DatagramService(EveryName(), codepage=codepage)
        self._fragment_frames: dict[tuple[str, int], list[int]] = {}
        """The frames of each datagram being reassembled, by (SOURCE_IP, DGM_ID)."""

    def events(self, segment: Segment) -> list[CaptureEvent]:
        """The messages `segment` completes."""
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
        service = self._service
        service.receive_data(segment.payload, peer=(segment.src, segment.sport), now=segment.time)
        found = []
        while (event := service.next_event()) is not NEED_DATA:
            if isinstance(event, MessageReceived):
                found.append(message_event(event, segment, list(frames), self.codepage))
        return found
