"""Every TCP stream of the shared captures through a SessionMachine, one per direction."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapReader

from messengerd.protocol.events import CloseConnection, MessageReceived, SendData
from messengerd.protocol.session import SessionMachine
from messengerd.wire.names import NetBIOSName
from tests.conftest import CAPTURES
from tests.helpers import Names, converse

Flow = tuple[str, int, str, int]

ALIASES = Names(local=[NetBIOSName(b"RECVR", 0x03), NetBIOSName(b"ALICE", 0x03)])
"""The aliases the captures' senders call: nmbd's RECVR and the loopback listener's ALICE."""


def tcp_streams(path: Path) -> dict[Flow, list[bytes]]:
    """Each direction's TCP payloads in capture order, each sequence number once.

    The samba capture was taken on both veth ends; keying on (flow, seq) drops the second
    copy of a segment, and retransmissions with it.
    """
    streams: dict[Flow, list[bytes]] = defaultdict(list)
    seen: set[tuple[Flow, int]] = set()
    with PcapReader(str(path)) as reader:
        for frame in reader:
            ip, tcp = frame.getlayer(IP), frame.getlayer(TCP)
            if ip is None or tcp is None:
                continue
            # ip.len, not the rebuilt layer, bounds the payload: Ethernet pads short frames.
            length = ip.len - ip.ihl * 4 - tcp.dataofs * 4
            payload = raw(tcp)[tcp.dataofs * 4 : tcp.dataofs * 4 + length]
            flow = (ip.src, tcp.sport, ip.dst, tcp.dport)
            if not payload or (flow, tcp.seq) in seen:
                continue
            seen.add((flow, tcp.seq))
            streams[flow].append(payload)
    return streams


def replay(payloads: list[bytes]) -> list:
    """Feed one direction to a fresh machine, storing each message; return every event."""
    machine = SessionMachine(ALIASES)
    return [event for payload in payloads for event in converse(machine, payload)]


def delivered(path: Path, **match) -> list[MessageReceived]:
    """Messages from every stream of `path` whose flow matches `match` (e.g. dport=139)."""
    found = []
    for (src, sport, dst, dport), payloads in tcp_streams(path).items():
        flow = {"src": src, "sport": sport, "dst": dst, "dport": dport}
        if all(flow[key] == value for key, value in match.items()):
            found += [event for event in replay(payloads) if isinstance(event, MessageReceived)]
    return found


def all_captures() -> list[str]:
    """Every capture's name; one placeholder that skips when the folder is absent."""
    return sorted(path.name for path in CAPTURES.glob("*.pcap")) or ["(no captures)"]


@pytest.mark.parametrize("name", all_captures())
def test_every_tcp_stream_of_every_capture_replays_without_error(capture, name):
    for flow, payloads in tcp_streams(capture(name)).items():
        events = replay(payloads)
        volume = sum(len(payload) for payload in payloads)
        assert len(events) <= volume // 4 + 2, flow
        for event in events:
            assert not (
                isinstance(event, CloseConnection) and event.reason.startswith("internal error")
            ), (flow, event)


def test_smbclient_messages_to_port_139_are_delivered_with_exact_text(capture):
    messages = delivered(capture("samba-smbclient-nmbd-netns.pcap"), dport=139)
    assert messages == [
        MessageReceived(
            sender=b"alice",
            recipient=b"RECVR",
            text=b"netns test line1\r\nline2\r\n",
            path="session",
        ),
        MessageReceived(sender=b"carol", recipient=b"RECVR", text=b"via bcast\r\n", path="session"),
    ]


def test_smbclient_on_a_high_port_is_delivered_without_a_session_request(capture):
    # The capture's own listener handed out MessageGroupId 0x1234, which its D7s repeat; only
    # the stream that was answered by smbd (group 0, as ours starts) replays to a message.
    messages = delivered(capture("smbclient-M-loopback.pcap"), dport=13939)
    assert (
        MessageReceived(
            sender=b"bob",
            recipient=b"RECVR",
            text=b"hi samba peer, Gr\x81\xe1e\r\n",
            path="session",
        )
        in messages
    )


@pytest.mark.parametrize(
    "name",
    ["netbios-split-session-msg.pcap", "netbios-truncated-session-msg.pcap", "netbios.pcap"],
)
def test_non_messenger_traffic_delivers_nothing(capture, name):
    assert delivered(capture(name)) == []


def test_split_session_message_gets_answers_then_close(capture):
    [payloads] = tcp_streams(capture("netbios-split-session-msg.pcap")).values()
    events = replay(payloads)
    assert isinstance(events[-1], CloseConnection)
    assert any(isinstance(event, SendData) for event in events)


def test_truncated_oversized_session_message_closes_at_once(capture):
    [payloads] = tcp_streams(capture("netbios-truncated-session-msg.pcap")).values()
    assert [type(event) for event in replay(payloads)] == [CloseConnection]
