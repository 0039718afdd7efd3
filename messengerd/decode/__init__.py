"""Messenger messages and name service events in a packet capture (PROTOCOL.md §2-5).

Nothing here parses protocol bytes itself: TCP streams go through SessionMachine, UDP 138
through DatagramService, UDP 137 through parse_nbns, exactly as the daemon takes them, with a
directory that owns every name so that every message in the capture comes out.

- capture: the capture file read into UDP and TCP payloads (the one use of scapy here);
- nameservice, datagrams, sessions: each service's segments into events;
- decoder: the segments sent to their service, copies of one packet joined;
- events: the CaptureEvent `messengerd decode` prints, as text or JSON.
"""

from messengerd.decode.decoder import (
    CAPTURE_COPY_WINDOW,
    CaptureDecoder,
    decode_capture,
    decode_segments,
)
from messengerd.decode.events import CaptureEvent

__all__ = [
    "CAPTURE_COPY_WINDOW",
    "CaptureDecoder",
    "CaptureEvent",
    "decode_capture",
    "decode_segments",
]
