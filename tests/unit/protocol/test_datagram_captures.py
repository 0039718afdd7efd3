"""Real UDP 138 traffic from ../shared/captures through the datagram service (PROTOCOL.md §5).

The captures hold browse announcements (and fuzzed copies of them), never a Messenger message:
the service must take every one without an exception and invent no message, even with a
directory that claims every name.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from messengerd.decode.capture import read_segments
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Dropped, EveryName, MessageReceived
from messengerd.wire.datagram import NETBIOS_DATAGRAM_PORT, DirectDatagram, parse_datagram
from tests.helpers import take


def datagram_payloads(path: Path) -> list[tuple[int, tuple[str, int], bytes, float]]:
    return [
        (segment.frame, (segment.src, segment.sport), segment.payload, segment.time)
        for segment in read_segments(path)
        if segment.transport == "udp" and NETBIOS_DATAGRAM_PORT in (segment.sport, segment.dport)
    ]


def test_every_capture_goes_through_without_inventing_a_message(captures: Path) -> None:
    seen = 0
    for path in sorted(captures.glob("*.pcap")):
        service = DatagramService(EveryName())
        for frame, peer, payload, time in datagram_payloads(path):
            events = take(service, payload, peer=peer, now=time)
            assert not any(isinstance(event, MessageReceived) for event in events), (path, frame)
            seen += 1
        service.expire(float("inf"))
        assert service.pending == 0
    assert seen > 0


def test_real_browse_announcements_parse_as_other_mailslots(capture) -> None:
    reasons: Counter[str] = Counter()
    for name in ("dos_win98_smb_netbeui.pcap", "samba-smbclient-nmbd-netns.pcap", "netbios.pcap"):
        service = DatagramService(EveryName())
        for _, peer, payload, time in datagram_payloads(capture(name)):
            assert isinstance(parse_datagram(payload), DirectDatagram)
            (event,) = take(service, payload, peer=peer, now=time)
            assert isinstance(event, Dropped)
            reasons[event.reason] += 1

    assert set(reasons) == {"mailslot b'\\\\MAILSLOT\\\\BROWSE' is not the Messenger's"}
    assert sum(reasons.values()) == 15 + 22 + 2
