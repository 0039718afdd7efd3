"""The name service struct codec against the scapy layers it mirrors: every build_* function
writes the layers' bytes, and parse_nbns reads what the layers dissect (RFC 1002 §4.2)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.packet import Packet

from messengerd.decode.capture import read_segments
from messengerd.wire.errors import WireError
from messengerd.wire.layers.nbns import (
    AddrEntry,
    NameQueryRequest,
    NameRefreshRequest,
    NameRegistrationRequest,
    NameRegistrationResponse,
    NameReleaseRequest,
    NameReleaseResponse,
    NameServiceHeader,
    NegativeNameQueryResponse,
    NodeNameEntry,
    NodeStatusRequest,
    NodeStatusResponse,
    PositiveNameQueryResponse,
    WaitForAcknowledgementResponse,
)
from messengerd.wire.names import NETBIOS_NAME_LENGTH, NetBIOSName
from messengerd.wire.nbns import (
    ACT_ERR,
    NAME_SERVICE_PORT,
    OPCODE_REFRESH,
    OPCODE_REFRESH_ALTERNATE,
    AddressEntry,
    NameQuery,
    NameRefresh,
    NameRegistration,
    NameRelease,
    NameServicePacket,
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
from tests.conftest import CAPTURES
from tests.unit.wire.strategies import (
    EQUIVALENCE,
    ipv4_addresses,
    netbios_names,
    uint16,
    uint32,
)
from tests.unit.wire.test_nbns_fuzz import VALID, mutated

BOB = NetBIOSName(b"BOB", 0x03)
rcodes = st.integers(1, 0xF)


def built(header: dict[str, int], body: Packet) -> bytes:
    """A packet as the layers build it: NameServiceHeader with `header`'s fields over `body`."""
    return bytes(NameServiceHeader(**header) / body)


def address_entries(nb_flags: int, address: str) -> list[AddrEntry]:
    return [AddrEntry(NB_FLAGS=nb_flags, NB_ADDRESS=address)]


# Builders: each against the layer build it replaced, field for field.


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, st.booleans(), st.booleans())
def test_name_query_request_is_the_layers(trn_id, name, broadcast, recursion_desired):
    header = {"NAME_TRN_ID": trn_id, "B": int(broadcast), "RD": int(recursion_desired)}
    assert build_name_query_request(
        trn_id, name, broadcast=broadcast, recursion_desired=recursion_desired
    ) == built(header, NameQueryRequest(QUESTION_NAME=name))


@settings(**EQUIVALENCE)
@given(uint16, netbios_names)
def test_node_status_request_is_the_layers(trn_id, name):
    expected = built({"NAME_TRN_ID": trn_id}, NodeStatusRequest(QUESTION_NAME=name))
    assert build_node_status_request(trn_id, name) == expected
    assert build_node_status_request(trn_id) == built({"NAME_TRN_ID": trn_id}, NodeStatusRequest())


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16, uint32)
def test_positive_name_query_response_is_the_layers(trn_id, name, address, nb_flags, ttl):
    body = PositiveNameQueryResponse(
        RR_NAME=name, TTL=ttl, ADDR_ENTRY=address_entries(nb_flags, address)
    )
    assert build_positive_name_query_response(
        trn_id, name, address, nb_flags=nb_flags, ttl=ttl
    ) == built({"NAME_TRN_ID": trn_id}, body)


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, rcodes)
def test_negative_name_query_response_is_the_layers(trn_id, name, rcode):
    header = {"NAME_TRN_ID": trn_id, "RCODE": rcode}
    assert build_negative_name_query_response(trn_id, name, rcode=rcode) == built(
        header, NegativeNameQueryResponse(RR_NAME=name)
    )


@st.composite
def node_status_answers(draw: st.DrawFn) -> tuple[NetBIOSName, list[NodeName]]:
    """An answer's name and as many NODE_NAME entries as fit it."""
    name = draw(netbios_names)
    entries = st.builds(NodeName, netbios_names, uint16)
    return name, draw(st.lists(entries, max_size=node_status_capacity(name)))


@settings(**EQUIVALENCE)
@given(uint16, node_status_answers(), st.binary(min_size=6, max_size=6))
def test_node_status_response_is_the_layers(trn_id, answer, unit_id):
    name, node_names = answer
    entries = [
        NodeNameEntry(
            NETBIOS_NAME=entry.name.to_bytes16()[:NETBIOS_NAME_LENGTH],
            SUFFIX=entry.name.suffix,
            NAME_FLAGS=entry.name_flags,
        )
        for entry in node_names
    ]
    body = NodeStatusResponse(RR_NAME=name, NODE_NAME=entries, UNIT_ID=unit_id)
    assert build_node_status_response(trn_id, name, node_names, unit_id=unit_id) == built(
        {"NAME_TRN_ID": trn_id}, body
    )


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16, uint32, st.booleans())
def test_name_registration_request_and_overwrite_demand_are_the_layers(
    trn_id, name, address, nb_flags, ttl, broadcast
):
    body = NameRegistrationRequest(
        QUESTION_NAME=name, TTL=ttl, NB_FLAGS=nb_flags, NB_ADDRESS=address
    )
    header = {"NAME_TRN_ID": trn_id, "B": int(broadcast)}
    assert build_name_registration_request(
        trn_id, name, address, nb_flags=nb_flags, ttl=ttl, broadcast=broadcast
    ) == built(header, body)
    demand = {"NAME_TRN_ID": trn_id, "RD": 0, "B": 1}
    assert build_name_overwrite_demand(trn_id, name, address, nb_flags=nb_flags, ttl=ttl) == built(
        demand, body
    )


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16, st.booleans())
def test_name_release_request_is_the_layers(trn_id, name, address, nb_flags, broadcast):
    body = NameReleaseRequest(QUESTION_NAME=name, NB_FLAGS=nb_flags, NB_ADDRESS=address)
    assert build_name_release_request(
        trn_id, name, address, nb_flags=nb_flags, broadcast=broadcast
    ) == built({"NAME_TRN_ID": trn_id, "B": int(broadcast)}, body)


@settings(**EQUIVALENCE)
@given(
    uint16,
    netbios_names,
    ipv4_addresses,
    uint16,
    uint32,
    st.sampled_from([OPCODE_REFRESH, OPCODE_REFRESH_ALTERNATE]),
    st.booleans(),
)
def test_name_refresh_request_is_the_layers(
    trn_id, name, address, nb_flags, ttl, opcode, broadcast
):
    body = NameRefreshRequest(QUESTION_NAME=name, TTL=ttl, NB_FLAGS=nb_flags, NB_ADDRESS=address)
    header = {"NAME_TRN_ID": trn_id, "OPCODE": opcode, "B": int(broadcast)}
    assert build_name_refresh_request(
        trn_id, name, address, nb_flags=nb_flags, ttl=ttl, opcode=opcode, broadcast=broadcast
    ) == built(header, body)


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16, st.integers(0, 0xF), uint32)
def test_name_registration_response_is_the_layers(trn_id, name, address, nb_flags, rcode, ttl):
    body = NameRegistrationResponse(
        RR_NAME=name, TTL=ttl, ADDR_ENTRY=address_entries(nb_flags, address)
    )
    assert build_name_registration_response(
        trn_id, name, address, nb_flags=nb_flags, rcode=rcode, ttl=ttl
    ) == built({"NAME_TRN_ID": trn_id, "RCODE": rcode}, body)


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16)
def test_negative_name_registration_response_is_the_layers(trn_id, name, address, nb_flags):
    body = NameRegistrationResponse(RR_NAME=name, ADDR_ENTRY=address_entries(nb_flags, address))
    assert build_negative_name_registration_response(
        trn_id, name, address, nb_flags=nb_flags
    ) == built({"NAME_TRN_ID": trn_id, "RCODE": ACT_ERR}, body)


@settings(**EQUIVALENCE)
@given(uint16, netbios_names, ipv4_addresses, uint16, st.integers(0, 0xF))
def test_name_release_response_is_the_layers(trn_id, name, address, nb_flags, rcode):
    body = NameReleaseResponse(RR_NAME=name, ADDR_ENTRY=address_entries(nb_flags, address))
    assert build_name_release_response(
        trn_id, name, address, nb_flags=nb_flags, rcode=rcode
    ) == built({"NAME_TRN_ID": trn_id, "RCODE": rcode}, body)


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_positive_name_query_response(1, BOB, "192.0.2.7", nb_flags=0x10000),
        lambda: build_name_registration_request(1, BOB, "192.0.2.7", nb_flags=-1),
        lambda: build_name_registration_request(1, BOB, "192.0.2.7", ttl=0x100000000),
        lambda: build_node_status_response(1, BOB, [NodeName(BOB, 0x10000)]),
        lambda: build_name_query_request(-1, BOB),
        lambda: build_name_release_response(1, BOB, "192.0.2.7", rcode=16),
    ],
    ids=["NB_FLAGS", "negative NB_FLAGS", "TTL", "NAME_FLAGS", "NAME_TRN_ID", "RCODE"],
)
def test_builders_refuse_fields_that_do_not_fit(build):
    with pytest.raises(WireError):
        build()


# parse_nbns: what it accepts, the layers dissect to the same fields.

QUESTION_PACKETS = {NameQueryRequest: NameQuery, NodeStatusRequest: NodeStatusQuery}
REQUEST_PACKETS = {
    NameRegistrationRequest: NameRegistration,
    NameReleaseRequest: NameRelease,
    NameRefreshRequest: NameRefresh,
}
ANSWER_PACKETS = {
    PositiveNameQueryResponse: QueryResponse,
    NegativeNameQueryResponse: QueryResponse,
    NameRegistrationResponse: RegistrationResponse,
    NameReleaseResponse: ReleaseResponse,
}


def read_with_layers(data: bytes) -> NameServicePacket:
    """The typed packet made from the fields NameServiceHeader(data) dissects."""
    header = NameServiceHeader(data)
    body = header.payload
    trn_id, flags = header.NAME_TRN_ID, struct.unpack_from("!H", data, 2)[0]
    layer = type(body)
    if layer in QUESTION_PACKETS:
        return QUESTION_PACKETS[layer](trn_id, flags, body.QUESTION_NAME)
    if layer in REQUEST_PACKETS:
        return REQUEST_PACKETS[layer](
            trn_id, flags, body.QUESTION_NAME, body.TTL, body.NB_FLAGS, body.NB_ADDRESS
        )
    if layer in ANSWER_PACKETS:
        entries = tuple(AddressEntry(e.NB_FLAGS, e.NB_ADDRESS) for e in body.ADDR_ENTRY)
        return ANSWER_PACKETS[layer](trn_id, flags, body.RR_NAME, body.TTL, entries)
    if layer is NodeStatusResponse:
        names = tuple(
            NodeName(
                NetBIOSName.from_bytes16(
                    entry.NETBIOS_NAME + bytes([entry.SUFFIX]), body.RR_NAME.scope
                ),
                entry.NAME_FLAGS,
            )
            for entry in body.NODE_NAME
        )
        statistics = bytes.fromhex(body.UNIT_ID.replace(":", "")) + body.STATISTICS
        return NodeStatus(trn_id, flags, body.RR_NAME, names, statistics)
    assert layer is WaitForAcknowledgementResponse, layer
    return WaitForAcknowledgement(trn_id, flags, body.RR_NAME, body.TTL, body.RDATA)


def assert_read_as_the_layers_read(data: bytes) -> None:
    """parse_nbns(data), where it accepts the bytes, is what the layers dissect."""
    try:
        parsed = parse_nbns(data)
    except WireError:
        return
    assert read_with_layers(data) == parsed


def test_every_packet_messengerd_builds_reads_as_the_layers_read_it():
    for data in VALID:
        assert_read_as_the_layers_read(data)


def test_a_wack_reads_as_the_layer_reads_it():
    data = built(
        {"NAME_TRN_ID": 4}, WaitForAcknowledgementResponse(RR_NAME=BOB, TTL=2, RDATA=0x2910)
    )
    assert (
        parse_nbns(data)
        == read_with_layers(data)
        == WaitForAcknowledgement(4, 0xBC00, BOB, 2, 0x2910)
    )


@pytest.mark.parametrize(
    "name", sorted(path.name for path in CAPTURES.glob("*.pcap")) or ["(no captures)"]
)
def test_every_capture_payload_reads_as_the_layers_read_it(capture, name):
    for segment in read_segments(capture(name)):
        if segment.transport == "udp" and NAME_SERVICE_PORT in (segment.sport, segment.dport):
            assert_read_as_the_layers_read(segment.payload)


@settings(**EQUIVALENCE)
@given(mutated())
def test_mutated_packets_read_as_the_layers_read_them(data):
    assert_read_as_the_layers_read(data)
