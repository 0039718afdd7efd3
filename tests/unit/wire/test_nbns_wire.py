"""Name service packets (RFC 1002 §4.2): scapy layers, parse_nbns and builders, on real bytes."""

from __future__ import annotations

import struct

import pytest

from messengerd.decode.capture import read_segments
from messengerd.wire.errors import WireError
from messengerd.wire.layers.nbns import (
    NameQueryRequest,
    NameRefreshRequest,
    NameRegistrationRequest,
    NameRegistrationResponse,
    NameReleaseRequest,
    NameReleaseResponse,
    NameServiceHeader,
    NegativeNameQueryResponse,
    NodeStatusRequest,
    NodeStatusResponse,
    PositiveNameQueryResponse,
    WaitForAcknowledgementResponse,
)
from messengerd.wire.names import WILDCARD_NAME, NetBIOSName
from messengerd.wire.nbns import (
    ACT_ERR,
    DEFAULT_TTL,
    HEADER_LENGTH,
    MAX_DATAGRAM_LENGTH,
    MAX_MESSAGE_LENGTH,
    NAM_ERR,
    NAME_FLAG_ACT,
    NB_FLAG_G,
    ONT_H,
    OPCODE_REFRESH_ALTERNATE,
    OPCODE_REGISTRATION,
    OPCODE_RELEASE,
    AddressEntry,
    NameQuery,
    NameRefresh,
    NameRegistration,
    NameRelease,
    NodeName,
    NodeStatus,
    NodeStatusQuery,
    QueryResponse,
    RegistrationResponse,
    ReleaseResponse,
    WaitForAcknowledgement,
    build_name_overwrite_demand,
    build_name_query_request,
    build_name_refresh_request,
    build_name_registration_request,
    build_name_registration_response,
    build_name_release_request,
    build_name_release_response,
    build_negative_name_query_response,
    build_negative_name_registration_response,
    build_node_status_request,
    build_node_status_response,
    build_positive_name_query_response,
    node_status_capacity,
    parse_nbns,
)

BOB = NetBIOSName(b"BOB", 0x03)
BOB_ENCODED = b"\x20ECEPECCACACACACACACACACACACACAAD\x00"
WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)
WORKGROUP = NetBIOSName(b"WORKGROUP", 0x00)
IP_ADDRESS = "192.0.2.7"
MAC = bytes.fromhex("001cc410790f")


def rebuilt(data: bytes) -> bytes:
    """`data` dissected by the scapy layers and built again from the fields, not scapy's cache."""
    packet = NameServiceHeader(data)
    packet.clear_cache()
    return bytes(packet)


def nbns_payloads(path, frames=None):
    """UDP/137 payloads of a capture by frame number."""
    return {
        segment.frame: segment.payload
        for segment in read_segments(path)
        if segment.transport == "udp"
        and 137 in (segment.sport, segment.dport)
        and (frames is None or segment.frame in frames)
    }


BUILT = {
    "name query request": (build_name_query_request(1, BOB), NameQueryRequest, 0x0110),
    "node status request": (build_node_status_request(2), NodeStatusRequest, 0x0000),
    "positive name query response": (
        build_positive_name_query_response(3, BOB, IP_ADDRESS),
        PositiveNameQueryResponse,
        0x8500,
    ),
    "negative name query response": (
        build_negative_name_query_response(4, BOB),
        NegativeNameQueryResponse,
        0x8503,
    ),
    "node status response": (
        build_node_status_response(5, WILDCARD, [NodeName(BOB, NAME_FLAG_ACT)], unit_id=MAC),
        NodeStatusResponse,
        0x8400,
    ),
    "name registration request": (
        build_name_registration_request(6, BOB, IP_ADDRESS),
        NameRegistrationRequest,
        0x2910,
    ),
    "name overwrite demand": (
        build_name_overwrite_demand(7, BOB, IP_ADDRESS),
        NameRegistrationRequest,
        0x2810,
    ),
    "name release request": (
        build_name_release_request(8, BOB, IP_ADDRESS),
        NameReleaseRequest,
        0x3010,
    ),
    "name refresh request": (
        build_name_refresh_request(9, BOB, IP_ADDRESS),
        NameRefreshRequest,
        0x4000,
    ),
    "positive name registration response": (
        build_name_registration_response(10, BOB, IP_ADDRESS),
        NameRegistrationResponse,
        0xAD80,
    ),
    "negative name registration response": (
        build_negative_name_registration_response(11, BOB, "192.0.2.9"),
        NameRegistrationResponse,
        0xAD86,
    ),
    "positive name release response": (
        build_name_release_response(12, BOB, IP_ADDRESS),
        NameReleaseResponse,
        0xB400,
    ),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_built_packets_round_trip_through_the_scapy_layers(kind):
    data, layer, flags = BUILT[kind]
    assert rebuilt(data) == data
    assert type(NameServiceHeader(data).payload) is layer
    assert struct.unpack_from("!H", data, 2)[0] == flags


PARSED_AS = {
    "name query request": NameQuery,
    "node status request": NodeStatusQuery,
    "positive name query response": QueryResponse,
    "negative name query response": QueryResponse,
    "node status response": NodeStatus,
    "name registration request": NameRegistration,
    "name overwrite demand": NameRegistration,
    "name release request": NameRelease,
    "name refresh request": NameRefresh,
    "positive name registration response": RegistrationResponse,
    "negative name registration response": RegistrationResponse,
    "positive name release response": ReleaseResponse,
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_built_packets_parse_back(kind):
    data, _, flags = BUILT[kind]
    parsed = parse_nbns(data)
    assert type(parsed) is PARSED_AS[kind]
    assert parsed.name in (BOB, WILDCARD)
    assert parsed.flags == flags
    assert parsed.trn_id == struct.unpack_from("!H", data)[0]


def test_registration_request_bytes_match_protocol_md():
    expected = (
        bytes.fromhex("1234 2910 0001 0000 0000 0001")
        + BOB_ENCODED
        + bytes.fromhex("0020 0001")
        + bytes.fromhex("c00c 0020 0001 000493e0 0006 0000 c0000207")
    )
    assert build_name_registration_request(0x1234, BOB, IP_ADDRESS) == expected


def test_positive_query_response_carries_nb_flags_and_address():
    data = build_positive_name_query_response(
        0x4EF7, BOB, IP_ADDRESS, nb_flags=NB_FLAG_G, ttl=259200
    )
    assert data == (
        bytes.fromhex("4ef7 8500 0000 0001 0000 0000")
        + BOB_ENCODED
        + bytes.fromhex("0020 0001 0003f480 0006 8000 c0000207")
    )
    assert parse_nbns(data) == QueryResponse(
        0x4EF7, 0x8500, BOB, 259200, (AddressEntry(NB_FLAG_G, IP_ADDRESS),)
    )


def test_negative_query_response_is_type_null_with_nam_err():
    data = build_negative_name_query_response(7, BOB)
    assert data == (
        bytes.fromhex("0007 8503 0000 0001 0000 0000")
        + BOB_ENCODED
        + bytes.fromhex("000a 0001 00000000 0000")
    )
    parsed = parse_nbns(data)
    assert isinstance(parsed, QueryResponse)
    assert not parsed.positive
    assert parsed.rcode == NAM_ERR
    assert parsed.entries == ()


def test_negative_registration_response_defends_with_act_err():
    data = build_negative_name_registration_response(0x99, BOB, "192.0.2.9")
    assert data[2:4] == b"\xad\x86"
    parsed = parse_nbns(data)
    assert isinstance(parsed, RegistrationResponse)
    assert parsed.rcode == ACT_ERR
    assert not parsed.positive
    assert parsed.entries == (AddressEntry(0, "192.0.2.9"),)


def test_release_and_refresh_requests_parse_to_their_kinds():
    release = parse_nbns(build_name_release_request(1, BOB, IP_ADDRESS, nb_flags=ONT_H))
    assert release == NameRelease(1, 0x3010, BOB, 0, ONT_H, IP_ADDRESS)
    refresh = parse_nbns(
        build_name_refresh_request(2, BOB, IP_ADDRESS, opcode=OPCODE_REFRESH_ALTERNATE)
    )
    assert isinstance(refresh, NameRefresh)
    assert refresh.opcode == OPCODE_REFRESH_ALTERNATE
    assert refresh.flags == 0x4800


def test_overwrite_demand_is_a_registration_without_rd():
    parsed = parse_nbns(build_name_overwrite_demand(3, BOB, IP_ADDRESS))
    assert isinstance(parsed, NameRegistration)
    assert parsed.overwrite_demand
    assert parsed.broadcast


@pytest.mark.parametrize("count", [0, 1, 4, 7, 26])
def test_node_status_rdlength_is_18_per_name_plus_47(count):
    names = [NodeName(NetBIOSName(b"N%d" % index, 0x03), NAME_FLAG_ACT) for index in range(count)]
    data = build_node_status_response(1, WILDCARD, names)
    rdlength_at = HEADER_LENGTH + len(WILDCARD.encode()) + 8
    (rdlength,) = struct.unpack_from("!H", data, rdlength_at)
    assert rdlength == 18 * count + 47
    assert len(data) == rdlength_at + 2 + rdlength
    assert data[rdlength_at + 2] == count


def test_node_status_response_lists_names_flags_and_mac():
    names = [NodeName(BOB, NAME_FLAG_ACT), NodeName(WORKGROUP, NAME_FLAG_ACT | NB_FLAG_G)]
    data = build_node_status_response(0x20A8, WILDCARD, names, unit_id=MAC)
    parsed = parse_nbns(data)
    assert isinstance(parsed, NodeStatus)
    assert parsed.node_names == tuple(names)
    assert parsed.unit_id == MAC
    assert parsed.statistics == MAC + bytes(40)
    assert [entry.group for entry in parsed.node_names] == [False, True]


def test_node_status_answer_fits_the_datagram_limit():
    capacity = node_status_capacity(WILDCARD)
    assert capacity == (MAX_DATAGRAM_LENGTH - 12 - 34 - 10 - 47) // 18 == 26
    names = [NodeName(NetBIOSName(b"N%d" % index, 0x03), NAME_FLAG_ACT) for index in range(27)]
    assert len(build_node_status_response(1, WILDCARD, names[:capacity])) <= MAX_DATAGRAM_LENGTH
    with pytest.raises(WireError, match="do not fit"):
        build_node_status_response(1, WILDCARD, names)


def test_names_with_a_scope_round_trip():
    scoped = NetBIOSName(b"BOB", 0x03, b"corp.example")
    data = build_name_query_request(5, scoped)
    assert rebuilt(data) == data
    assert parse_nbns(data) == NameQuery(5, 0x0110, scoped)


def test_registration_with_a_full_rr_name_instead_of_a_pointer_parses():
    pointer = build_name_registration_request(1, BOB, IP_ADDRESS)
    at = HEADER_LENGTH + len(BOB_ENCODED) + 4
    full = pointer[:at] + BOB_ENCODED + pointer[at + 2 :]
    assert parse_nbns(full) == parse_nbns(pointer)
    assert rebuilt(full) == full


def test_registration_whose_rr_name_differs_from_the_question_is_refused():
    pointer = build_name_registration_request(1, BOB, IP_ADDRESS)
    at = HEADER_LENGTH + len(BOB_ENCODED) + 4
    other = pointer[:at] + NetBIOSName(b"EVE", 0x03).encode() + pointer[at + 2 :]
    with pytest.raises(WireError, match="differs"):
        parse_nbns(other)


def test_wack_response_parses():
    data = bytes(
        NameServiceHeader(NAME_TRN_ID=4)
        / WaitForAcknowledgementResponse(RR_NAME=BOB, TTL=2, RDATA=0x2910)
    )
    assert data[2:4] == b"\xbc\x00"
    assert parse_nbns(data) == WaitForAcknowledgement(4, 0xBC00, BOB, 2, 0x2910)


def _pointer_request(pointer: int) -> bytes:
    data = bytearray(build_name_registration_request(1, BOB, IP_ADDRESS))
    struct.pack_into("!H", data, HEADER_LENGTH + len(BOB_ENCODED) + 4, pointer)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than its header"),
        (bytes(11), "shorter than its header"),
        (bytes(MAX_MESSAGE_LENGTH + 1), "exceeds"),
        (bytes.fromhex("0001 0110 0002 0000 0000 0000") + BOB_ENCODED, "section counts"),
        (bytes.fromhex("0001 0110 0001 ffff 0000 0000") + BOB_ENCODED, "section counts"),
        (bytes.fromhex("0001 0910 0001 0000 0000 0000") + BOB_ENCODED, "opcode 1"),
        (bytes.fromhex("0001 0110 0001 0000 0000 0000") + BOB_ENCODED, "truncated"),
        (
            bytes.fromhex("0001 0110 0001 0000 0000 0000") + BOB_ENCODED + b"\x00\x20\x00\x03",
            "not IN",
        ),
        (
            bytes.fromhex("0001 0110 0001 0000 0000 0000") + BOB_ENCODED + b"\x00\x01\x00\x01",
            "question type",
        ),
        (_pointer_request(0xC000 | 62), "points forward"),
        (_pointer_request(0xC000 | 200), "points forward"),
        (_pointer_request(0xC000 | 2), "32-byte label"),
        (_pointer_request(0xC000 | 13), "32-byte label"),
        (build_positive_name_query_response(1, BOB, IP_ADDRESS)[:-1], "RDLENGTH"),
        (build_node_status_response(1, WILDCARD, [])[:-1], "RDLENGTH"),
    ],
)
def test_malformed_packets_raise_wire_error(data, reason):
    with pytest.raises(WireError, match=reason):
        parse_nbns(data)


def test_pointer_to_a_pointer_is_not_followed():
    data = bytearray(_pointer_request(0xC00C))
    # Make the question name itself a pointer to the additional record's pointer.
    record_pointer = HEADER_LENGTH + len(BOB_ENCODED) + 4
    data[HEADER_LENGTH : HEADER_LENGTH + 2] = struct.pack("!H", 0xC000 | record_pointer)
    with pytest.raises(WireError):
        parse_nbns(bytes(data))


def test_node_status_with_wrong_rdlength_is_refused():
    data = bytearray(build_node_status_response(1, WILDCARD, [NodeName(BOB, NAME_FLAG_ACT)]))
    data[HEADER_LENGTH + 34 + 10] = 2  # NUM_NAMES says 2, RDLENGTH holds 1
    with pytest.raises(WireError, match="18 \\* 2 \\+ 47"):
        parse_nbns(bytes(data))


def test_positive_query_response_without_an_address_is_refused():
    data = bytes(NameServiceHeader(NAME_TRN_ID=1) / PositiveNameQueryResponse(RR_NAME=BOB))
    with pytest.raises(WireError, match="without an address"):
        parse_nbns(data)


def test_builders_refuse_values_that_do_not_fit():
    with pytest.raises(WireError):
        build_positive_name_query_response(1, BOB, "not an address")
    with pytest.raises(WireError):
        build_positive_name_query_response(0x10000, BOB, IP_ADDRESS)
    with pytest.raises(WireError):
        build_positive_name_query_response(1, BOB, IP_ADDRESS, ttl=-1)
    with pytest.raises(WireError):
        build_negative_name_query_response(1, BOB, rcode=0)
    with pytest.raises(WireError):
        build_negative_name_registration_response(1, BOB, IP_ADDRESS, rcode=0)
    with pytest.raises(WireError):
        build_node_status_response(1, WILDCARD, [], unit_id=b"\x00")
    with pytest.raises(WireError):
        build_name_refresh_request(1, BOB, IP_ADDRESS, opcode=OPCODE_REGISTRATION)


# --- real captures ---------------------------------------------------------------------------


WIN98_MDJR98_FRAMES = {9: False, 17: False, 21: True, 27: True, 29: True, 36: True}


def test_win98_registrations_of_mdjr98_03(capture):
    payloads = nbns_payloads(capture("dos_win98_smb_netbeui.pcap"), WIN98_MDJR98_FRAMES)
    assert set(payloads) == set(WIN98_MDJR98_FRAMES)
    for frame, broadcast in WIN98_MDJR98_FRAMES.items():
        parsed = parse_nbns(payloads[frame])
        assert isinstance(parsed, NameRegistration), frame
        assert parsed.name == NetBIOSName(b"MDJR98", 0x03)
        assert parsed.opcode == OPCODE_REGISTRATION
        assert parsed.nb_flags == 0
        assert parsed.address == "192.168.239.129"
        assert parsed.ttl == DEFAULT_TTL
        assert parsed.broadcast is broadcast
    # After three broadcasts without objection Windows 98 demands the name (RFC 1002 §4.2.3).
    assert parse_nbns(payloads[36]).overwrite_demand
    assert not parse_nbns(payloads[29]).overwrite_demand


def test_win98_registrations_of_the_user_alias(capture):
    payloads = nbns_payloads(capture("dos_win98_smb_netbeui.pcap"), range(211, 221))
    assert sorted(payloads) == [211, 215, 216, 217, 218, 219, 220]
    for frame, payload in payloads.items():
        parsed = parse_nbns(payload)
        assert isinstance(parsed, NameRegistration), frame
        assert parsed.name == NetBIOSName(b"MARTIN ROSENAU", 0x03)
        assert parsed.address == "192.168.239.129"
        assert not parsed.group


NODE_STATUS_PAIRS = [(54, 55), (128, 129), (173, 174), (186, 187)]


@pytest.mark.parametrize(("request_frame", "answer_frame"), NODE_STATUS_PAIRS)
def test_windows_node_status_pairs(capture, request_frame, answer_frame):
    payloads = nbns_payloads(capture("netbios.pcap"), {request_frame, answer_frame})
    question = parse_nbns(payloads[request_frame])
    answer = parse_nbns(payloads[answer_frame])
    assert isinstance(question, NodeStatusQuery)
    assert question.wildcard
    assert isinstance(answer, NodeStatus)
    assert answer.trn_id == question.trn_id
    assert answer.flags == 0x8400
    assert answer.name == question.name
    assert answer.unit_id == MAC
    assert answer.node_names == (
        NodeName(NetBIOSName(b"GUNNAR", 0x00), NAME_FLAG_ACT),
        NodeName(NetBIOSName(b"VIGILANT_GROUP", 0x00), NAME_FLAG_ACT | NB_FLAG_G),
        NodeName(NetBIOSName(b"GUNNAR", 0x20), NAME_FLAG_ACT),
        NodeName(NetBIOSName(b"VIGILANT_GROUP", 0x1E), NAME_FLAG_ACT | NB_FLAG_G),
    )
    for payload in payloads.values():
        assert rebuilt(payload) == payload
    layer = NameServiceHeader(payloads[answer_frame]).payload
    assert isinstance(layer, NodeStatusResponse)
    assert layer.RDLENGTH == 18 * 4 + 47


def test_our_node_status_answer_matches_windows_byte_for_byte(capture):
    payload = nbns_payloads(capture("netbios.pcap"), {55})[55]
    windows = parse_nbns(payload)
    assert isinstance(windows, NodeStatus)
    ours = build_node_status_response(
        windows.trn_id, windows.name, windows.node_names, unit_id=windows.unit_id
    )
    assert ours == payload


def test_nmbd_node_status_answers_parse(capture):
    payloads = nbns_payloads(capture("samba-smbclient-nmbd-netns.pcap"), {90, 94})
    for payload in payloads.values():
        answer = parse_nbns(payload)
        assert isinstance(answer, NodeStatus)
        assert NodeName(NetBIOSName(b"RECVR", 0x03), NAME_FLAG_ACT) in answer.node_names
        assert NodeName(NetBIOSName(b"LABWG", 0x00), NAME_FLAG_ACT | NB_FLAG_G) in (
            answer.node_names
        )
    assert parse_nbns(payloads[94]).name == NetBIOSName(b"RECVR", 0x00)


ANYCONNECT_RELEASES = {
    548: b"LP-RKERUR-OSX",
    550: b"LP-B043053-W764",
    553: b"LP-RKERUR-OSX",
}


def test_anyconnect_releases(capture):
    payloads = nbns_payloads(capture("anyconnect-vpn.pcap"), ANYCONNECT_RELEASES)
    for frame, name in ANYCONNECT_RELEASES.items():
        parsed = parse_nbns(payloads[frame])
        assert isinstance(parsed, NameRelease), frame
        assert parsed.opcode == OPCODE_RELEASE
        assert parsed.name == NetBIOSName(name, 0x00)
        assert parsed.nb_flags == ONT_H
        assert parsed.address == "10.0.0.227"
        assert parsed.ttl == 0
        assert parsed.broadcast
        assert rebuilt(payloads[frame]) == payloads[frame]


def test_anyconnect_registrations(capture):
    payloads = nbns_payloads(capture("anyconnect-vpn.pcap"), {561, 569, 572})
    assert len(payloads) == 3
    for frame, payload in payloads.items():
        parsed = parse_nbns(payload)
        assert parsed == NameRegistration(
            parsed.trn_id, 0x2910, NetBIOSName(b"LP-B043053-W764", 0x00), 900, ONT_H, "10.0.0.227"
        ), frame
        assert rebuilt(payload) == payload


def test_nmbd_query_answers_parse(capture):
    payloads = nbns_payloads(capture("samba-smbclient-nmbd-netns.pcap"), {83, 84})
    query, answer = parse_nbns(payloads[83]), parse_nbns(payloads[84])
    assert isinstance(query, NameQuery)
    assert not query.broadcast
    assert not query.recursion_desired
    assert answer == QueryResponse(
        query.trn_id, 0x8580, NetBIOSName(b"RECVR", 0x03), 259200, (AddressEntry(0, "192.0.2.1"),)
    )
