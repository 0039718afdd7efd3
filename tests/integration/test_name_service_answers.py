"""What a running daemon's name service answers, on real UDP sockets: only for the names it
holds, never for the workgroup it listens on, and node status rate-limited and never to a
broadcast (issue 12, items 2 and 11). Requests come from real captures replayed and from
messengerd.wire's own builders."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from messengerd.background import DaemonThread
from messengerd.config.options import DaemonConfig
from messengerd.core import limits
from messengerd.core.message import Message
from messengerd.daemon import Daemon
from messengerd.decode.capture import read_segments
from messengerd.wire.datagram import (
    DIRECT_GROUP,
    build_datagram,
    build_mailslot_write,
    build_messenger_payload,
)
from messengerd.wire.errors import WireError
from messengerd.wire.names import WILDCARD_NAME, NetBIOSName
from messengerd.wire.nbns import (
    FLAG_B,
    NAME_SERVICE_PORT,
    NameQuery,
    NameServicePacket,
    NodeStatus,
    NodeStatusQuery,
    QueryResponse,
    build_name_query_request,
    build_node_status_request,
    parse_nbns,
)

LOOPBACK = "127.0.0.1"
RECVR = NetBIOSName(b"RECVR", 0x03)
WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)
WORKGROUPS = ["WORKGROUP", "OZI"]
"""The default, and the domain netbios.pcap's hosts ask <1C> of 59 times."""
_trn_ids = itertools.count(0x4000)


class Collector:
    """A sink keeping every message, read from the test's thread once it has come."""

    name = "collector"

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def deliver(self, message: Message) -> None:
        self.messages.append(message)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = DaemonConfig(
        bind=LOOPBACK,
        broadcast="127.255.255.255",
        name_port=0,
        datagram_port=0,
        session_port=0,
        aliases=["RECVR"],
        workgroups=WORKGROUPS,
        data_dir=tmp_path,
        store=False,
        keep_aliases=False,
        register=False,
        control="none",
    )
    daemon = Daemon(config, [Collector()])
    runner = DaemonThread(daemon)
    runner.start()
    yield daemon
    runner.stop()


def exchange(port: int, requests: list[bytes]) -> list[NameServicePacket]:
    """Send `requests` to the daemon's name port, then a query for RECVR<03> (which it
    always answers, and answers last: datagrams are answered in order); every answer before
    that one."""
    sentinel = next(_trn_ids)
    answers: list[NameServicePacket] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for request in requests:
            sock.sendto(request, (LOOPBACK, port))
        sock.sendto(build_name_query_request(sentinel, RECVR, broadcast=False), (LOOPBACK, port))
        while True:
            answer = parse_nbns(sock.recvfrom(2048)[0])
            if isinstance(answer, QueryResponse) and answer.trn_id == sentinel:
                return answers
            answers.append(answer)


def false_answers(answers: list[NameServicePacket]) -> list[str]:
    """Answers that claim a name other than RECVR<03>: positive query answers for another
    name, node status answers for a name we do not hold."""
    found = []
    for answer in answers:
        if isinstance(answer, QueryResponse) and answer.rcode == 0 and answer.name != RECVR:
            found.append(f"query answer for {answer.name}")
        if isinstance(answer, NodeStatus) and answer.name not in (RECVR, WILDCARD):
            found.append(f"node status for {answer.name}")
    return found


def capture_requests(path: Path) -> list[bytes]:
    """Every name service request in a capture, as it was on the wire."""
    requests = []
    for segment in read_segments(path):
        if segment.transport != "udp" or segment.dport != NAME_SERVICE_PORT:
            continue
        try:
            packet = parse_nbns(segment.payload)
        except WireError:
            continue
        if isinstance(packet, NameQuery | NodeStatusQuery):
            requests.append(segment.payload)
    return requests


@pytest.mark.parametrize("name", ["netbios.pcap", "anyconnect-vpn.pcap"])
def test_replayed_captures_get_no_answer_for_a_name_not_held(daemon, capture, name):
    requests = capture_requests(capture(name))
    assert requests
    answers = exchange(daemon.ports["name"], requests)
    assert false_answers(answers) == []


@pytest.mark.parametrize("suffix", [0x00, 0x03, 0x1B, 0x1C, 0x1D, 0x1E, 0x20])
def test_the_workgroup_is_answered_under_no_suffix(daemon, suffix):
    group = NetBIOSName(b"WORKGROUP", suffix)
    requests = [
        build_name_query_request(next(_trn_ids), group, broadcast=True),
        build_name_query_request(next(_trn_ids), group, broadcast=False),
        build_node_status_request(next(_trn_ids), group),
    ]
    assert false_answers(exchange(daemon.ports["name"], requests)) == []


def test_a_workgroup_broadcast_message_is_still_taken(daemon):
    """`net send WORKGROUP` arrives as a group datagram to WORKGROUP<03>: the datagram
    service listens on the group the name service does not answer for."""
    payload = build_messenger_payload(b"ADMIN", b"WORKGROUP", b"to everyone")
    datagram = build_datagram(
        build_mailslot_write(payload),
        source_name=NetBIOSName(b"ADMIN", 0x00),
        destination_name=NetBIOSName(b"WORKGROUP", 0x03),
        source_ip=LOOPBACK,
        datagram_id=next(_trn_ids),
        msg_type=DIRECT_GROUP,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, (LOOPBACK, daemon.ports["datagram"]))
    collector = daemon.fanout.sinks[0]
    deadline = time.monotonic() + 5
    while not collector.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [message.text for message in collector.messages] == ["to everyone"]


def node_status_answers(answers: list[NameServicePacket]) -> list[NodeStatus]:
    return [answer for answer in answers if isinstance(answer, NodeStatus)]


def test_node_status_answers_to_one_source_are_rate_limited(daemon):
    requests = [build_node_status_request(next(_trn_ids)) for _ in range(50)]
    started = time.monotonic()
    answers = node_status_answers(exchange(daemon.ports["name"], requests))
    # The burst, and what the bucket refilled while they were sent (milliseconds: 0 or 1).
    refill = int((time.monotonic() - started) * limits.NODE_STATUS_RATE) + 1
    assert limits.NODE_STATUS_BURST <= len(answers) <= limits.NODE_STATUS_BURST + refill
    assert all(RECVR in [entry.name for entry in answer.node_names] for answer in answers)


def test_a_broadcast_node_status_request_is_not_answered(daemon):
    request = bytearray(build_node_status_request(next(_trn_ids)))
    request[2:4] = (int.from_bytes(request[2:4], "big") | FLAG_B).to_bytes(2, "big")
    assert node_status_answers(exchange(daemon.ports["name"], [bytes(request)])) == []
    # Nor one that came to the broadcast address, B bit or not.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(0.3)
        sock.sendto(
            build_node_status_request(next(_trn_ids)), ("127.255.255.255", daemon.ports["name"])
        )
        with pytest.raises(TimeoutError):
            sock.recvfrom(2048)
