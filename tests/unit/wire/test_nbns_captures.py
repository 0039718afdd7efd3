"""Every UDP/137 payload of every capture through parse_nbns, the scapy layers and NameService."""

from __future__ import annotations

import pytest
from scapy.packet import Raw

from messengerd.decode.capture import read_segments
from messengerd.protocol.nameservice import NameService
from messengerd.wire.errors import WireError
from messengerd.wire.layers.nbns import (
    NameServiceHeader,
)
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    NAME_SERVICE_PORT,
    NameQuery,
    NameRegistration,
    NameServicePacket,
    NodeStatusQuery,
    QueryResponse,
    RegistrationResponse,
    parse_nbns,
)
from tests.conftest import CAPTURES
from tests.helpers import reply_to

KNOWN_CAPTURES = [
    "anyconnect-vpn.pcap",
    "dos_win98_smb_netbeui.pcap",
    "fuzz-2006-06-26-2594.pcap",
    "netbios-split-session-msg.pcap",
    "netbios-truncated-session-msg.pcap",
    "netbios.pcap",
    "samba-smbclient-nmbd-netns.pcap",
    "smbclient-M-loopback.pcap",
]
ALL_CAPTURES = sorted(
    {path.name for path in CAPTURES.glob("*.pcap*")} | set(KNOWN_CAPTURES)
    if CAPTURES.is_dir()
    else KNOWN_CAPTURES
)
RECVR = NetBIOSName(b"RECVR", 0x03)


class OnlyRecvr:
    """A Directory owning RECVR<03> and nothing else."""

    def is_local(self, name):
        return name == RECVR

    def is_group(self, name):
        return False

    def name_table(self):
        return [(RECVR, False)]


def name_service_payloads(path):
    return [
        segment
        for segment in read_segments(path)
        if segment.transport == "udp" and NAME_SERVICE_PORT in (segment.sport, segment.dport)
    ]


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_every_payload_parses_or_raises_wire_error(capture, name):
    for segment in name_service_payloads(capture(name)):
        try:
            parsed = parse_nbns(segment.payload)
        except WireError:
            continue
        assert isinstance(parsed, NameServicePacket), segment.frame


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_every_payload_round_trips_through_the_scapy_layers(capture, name):
    for segment in name_service_payloads(capture(name)):
        packet = NameServiceHeader(segment.payload)
        # Rebuild from the fields, not from scapy's cache of the bytes it was given.
        packet.clear_cache()
        assert bytes(packet) == segment.payload, segment.frame
        try:
            parse_nbns(segment.payload)
        except WireError:
            continue
        assert not isinstance(packet.payload, Raw), segment.frame


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_name_service_answers_only_for_names_it_owns(capture, name):
    service = NameService(OnlyRecvr())
    for segment in name_service_payloads(capture(name)):
        reply = reply_to(service, segment.payload, local_ip="192.0.2.1")
        if reply is None:
            continue
        request = parse_nbns(segment.payload)
        answer = parse_nbns(reply)
        assert answer.trn_id == request.trn_id, segment.frame
        if isinstance(request, NodeStatusQuery):
            assert request.wildcard or request.name == RECVR, segment.frame
        elif isinstance(request, NameRegistration):
            # Another node claiming our unique name is told it is taken (ACT_ERR).
            assert request.name == RECVR and request.address != "192.0.2.1", segment.frame
            assert isinstance(answer, RegistrationResponse) and not answer.positive
        else:
            assert isinstance(request, NameQuery), segment.frame
            positive = isinstance(answer, QueryResponse) and answer.positive
            # Otherwise only the NAM_ERR a unicast query without RD gets.
            assert positive == (request.name == RECVR), segment.frame


def test_the_fuzz_capture_holds_about_a_hundred_packets_and_all_survive(capture):
    segments = name_service_payloads(capture("fuzz-2006-06-26-2594.pcap"))
    assert len(segments) >= 100
    service = NameService(OnlyRecvr())
    refused = 0
    for segment in segments:
        try:
            parse_nbns(segment.payload)
        except WireError:
            refused += 1
        assert reply_to(service, segment.payload, local_ip="192.0.2.1") is None
    assert refused >= 40


def test_we_answer_the_queries_nmbd_answered(capture):
    segments = name_service_payloads(capture("samba-smbclient-nmbd-netns.pcap"))
    service = NameService(OnlyRecvr())
    answered = {}
    for segment in segments:
        reply = reply_to(service, segment.payload, local_ip="192.0.2.1")
        if reply is not None:
            answered[parse_nbns(reply).trn_id] = parse_nbns(reply)
    nmbd = [
        parse_nbns(segment.payload)
        for segment in segments
        if segment.payload[2] & 0x80 and parse_nbns(segment.payload).name == RECVR
    ]
    assert nmbd
    for theirs in nmbd:
        ours = answered[theirs.trn_id]
        assert ours.name == theirs.name
        assert ours.entries == theirs.entries
