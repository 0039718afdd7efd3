"""The name service machine (RFC 1002 §4.2): what it answers, to whom, and what it ignores."""

from __future__ import annotations

import pytest

from messengerd.protocol.events import Dropped
from messengerd.protocol.nameservice import NameService
from messengerd.wire.names import WILDCARD_NAME, NetBIOSName
from messengerd.wire.nbns import (
    DEFAULT_TTL,
    MAX_DATAGRAM_LENGTH,
    NAM_ERR,
    NAME_FLAG_ACT,
    NB_FLAG_G,
    AddressEntry,
    NodeName,
    NodeStatus,
    QueryResponse,
    build_name_query_request,
    build_name_refresh_request,
    build_name_registration_request,
    build_name_registration_response,
    build_name_release_request,
    build_negative_name_query_response,
    build_node_status_request,
    build_node_status_response,
    build_positive_name_query_response,
    node_status_capacity,
    parse_nbns,
)
from tests.helpers import Names, reply_to, take

BOB = NetBIOSName(b"BOB", 0x03)
RECVR = NetBIOSName(b"RECVR", 0x03)
RECVR_WORKSTATION = NetBIOSName(b"RECVR", 0x00)
WORKGROUP = NetBIOSName(b"WORKGROUP", 0x00)
EVE = NetBIOSName(b"EVE", 0x03)
WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)
LOCAL_IP = "192.0.2.1"
MAC = bytes.fromhex("020000c0ffee")


@pytest.fixture
def service():
    return NameService(Names(local=[BOB, RECVR], groups=[WORKGROUP]), mac=MAC)


def query(name, *, broadcast=True, recursion_desired=True, trn_id=0x4EF7):
    return build_name_query_request(
        trn_id, name, broadcast=broadcast, recursion_desired=recursion_desired
    )


@pytest.mark.parametrize(
    ("broadcast", "recursion_desired"), [(True, True), (False, True), (False, False)]
)
def test_query_for_an_alias_is_answered_with_the_local_ip(service, broadcast, recursion_desired):
    reply = reply_to(
        service,
        query(BOB, broadcast=broadcast, recursion_desired=recursion_desired),
        local_ip=LOCAL_IP,
    )
    assert reply is not None
    assert parse_nbns(reply) == QueryResponse(
        0x4EF7, 0x8500, BOB, DEFAULT_TTL, (AddressEntry(0, LOCAL_IP),)
    )


def test_answer_uses_the_configured_ttl_and_the_local_ip_given():
    service = NameService(Names(local=[BOB]), ttl=60)
    reply = parse_nbns(reply_to(service, query(BOB), local_ip="10.1.2.3"))
    assert reply.ttl == 60
    assert reply.entries == (AddressEntry(0, "10.1.2.3"),)


def test_query_for_a_group_name_is_answered_with_the_g_flag(service):
    reply = parse_nbns(reply_to(service, query(WORKGROUP), local_ip=LOCAL_IP))
    assert reply.entries == (AddressEntry(NB_FLAG_G, LOCAL_IP),)


def test_broadcast_query_for_an_unknown_name_is_ignored(service):
    assert reply_to(service, query(EVE), local_ip=LOCAL_IP) is None


def test_unicast_query_with_rd_for_an_unknown_name_is_ignored(service):
    assert reply_to(service, query(EVE, broadcast=False), local_ip=LOCAL_IP) is None


def test_unicast_query_without_rd_for_an_unknown_name_gets_nam_err(service):
    # What `nmblookup -U host NAME` sends (samba-smbclient-nmbd-netns.pcap frame 83).
    reply = reply_to(
        service, query(EVE, broadcast=False, recursion_desired=False, trn_id=7), local_ip=LOCAL_IP
    )
    assert reply == build_negative_name_query_response(7, EVE)
    parsed = parse_nbns(reply)
    assert isinstance(parsed, QueryResponse)
    assert parsed.rcode == NAM_ERR
    assert parsed.flags == 0x8503


def test_negative_answers_can_be_turned_off():
    service = NameService(Names(local=[BOB]), negative_answers=False)
    unicast = query(EVE, broadcast=False, recursion_desired=False)
    assert reply_to(service, unicast, local_ip=LOCAL_IP) is None


def test_machine_names_are_answered_only_when_the_directory_owns_them():
    without = NameService(Names(local=[BOB]))
    assert reply_to(without, query(RECVR_WORKSTATION), local_ip=LOCAL_IP) is None
    with_names = NameService(Names(local=[BOB, RECVR_WORKSTATION]))
    reply = parse_nbns(reply_to(with_names, query(RECVR_WORKSTATION), local_ip=LOCAL_IP))
    assert reply.name == RECVR_WORKSTATION


def test_name_query_for_the_wildcard_is_not_answered():
    service = NameService(Names(groups=[WILDCARD]))
    assert reply_to(service, query(WILDCARD), local_ip=LOCAL_IP) is None


def test_node_status_lists_aliases_and_group_names_with_windows_flags(service):
    reply = reply_to(service, build_node_status_request(0x20A8), local_ip=LOCAL_IP)
    parsed = parse_nbns(reply)
    assert isinstance(parsed, NodeStatus)
    assert parsed.trn_id == 0x20A8
    assert parsed.flags == 0x8400
    assert parsed.name == WILDCARD
    assert parsed.node_names == (
        NodeName(BOB, NAME_FLAG_ACT),
        NodeName(RECVR, NAME_FLAG_ACT),
        NodeName(WORKGROUP, NAME_FLAG_ACT | NB_FLAG_G),
    )
    assert parsed.unit_id == MAC
    assert reply == build_node_status_response(0x20A8, WILDCARD, parsed.node_names, unit_id=MAC)


def test_node_status_answer_has_ttl_zero(service):
    reply = reply_to(service, build_node_status_request(1), local_ip=LOCAL_IP)
    ttl_at = 12 + 34 + 4
    assert reply[ttl_at : ttl_at + 4] == bytes(4)


def test_node_status_leaves_out_the_wildcard_the_directory_listens_on():
    service = NameService(Names(local=[BOB], groups=[WILDCARD, WORKGROUP]))
    parsed = parse_nbns(reply_to(service, build_node_status_request(1), local_ip=LOCAL_IP))
    assert [entry.name for entry in parsed.node_names] == [BOB, WORKGROUP]


def test_node_status_for_one_of_our_names_is_answered(service):
    parsed = parse_nbns(reply_to(service, build_node_status_request(3, BOB), local_ip=LOCAL_IP))
    assert isinstance(parsed, NodeStatus)
    assert parsed.name == BOB
    assert len(parsed.node_names) == 3


def test_node_status_for_someone_elses_name_is_ignored(service):
    assert reply_to(service, build_node_status_request(3, EVE), local_ip=LOCAL_IP) is None


def test_node_status_with_more_names_than_fit_lists_what_fits():
    names = [NetBIOSName(b"ALIAS%d" % index, 0x03) for index in range(40)]
    service = NameService(Names(local=names))
    reply = reply_to(service, build_node_status_request(1), local_ip=LOCAL_IP)
    assert len(reply) <= MAX_DATAGRAM_LENGTH
    parsed = parse_nbns(reply)
    assert len(parsed.node_names) == node_status_capacity(WILDCARD)
    assert parsed.node_names[0].name == names[0]


def test_empty_directory_still_answers_wildcard_node_status():
    parsed = parse_nbns(
        reply_to(NameService(Names()), build_node_status_request(1), local_ip=LOCAL_IP)
    )
    assert parsed.node_names == ()
    assert parsed.unit_id == bytes(6)


def test_queries_in_our_scope_are_answered_and_others_ignored():
    service = NameService(Names(local=[BOB]), scope=b"corp.example")
    scoped = NetBIOSName(b"BOB", 0x03, b"CORP.example")
    reply = parse_nbns(reply_to(service, query(scoped), local_ip=LOCAL_IP))
    assert reply.name == scoped
    assert reply_to(service, query(BOB), local_ip=LOCAL_IP) is None
    status = NetBIOSName.from_bytes16(WILDCARD_NAME, b"corp.example")
    assert isinstance(
        parse_nbns(reply_to(service, build_node_status_request(2, status), local_ip=LOCAL_IP)),
        NodeStatus,
    )
    assert reply_to(service, build_node_status_request(2), local_ip=LOCAL_IP) is None


def test_default_scope_ignores_scoped_queries(service):
    scoped = NetBIOSName(b"BOB", 0x03, b"corp")
    assert reply_to(service, query(scoped), local_ip=LOCAL_IP) is None
    unicast = query(NetBIOSName(b"EVE", 0x03, b"corp"), broadcast=False, recursion_desired=False)
    assert reply_to(service, unicast, local_ip=LOCAL_IP) is None


@pytest.mark.parametrize(
    "data",
    [
        build_positive_name_query_response(1, BOB, "192.0.2.99"),
        build_negative_name_query_response(2, BOB),
        build_node_status_response(3, WILDCARD, [NodeName(BOB, NAME_FLAG_ACT)]),
        build_name_registration_response(4, BOB, "192.0.2.99"),
    ],
    ids=["query response", "negative query response", "node status", "registration response"],
)
def test_responses_are_ignored(service, data):
    assert reply_to(service, data, local_ip=LOCAL_IP) is None


@pytest.mark.parametrize(
    "data",
    [
        build_name_registration_request(1, EVE, "192.0.2.99"),
        build_name_release_request(4, BOB, "192.0.2.99"),
        build_name_refresh_request(5, BOB, "192.0.2.99"),
    ],
    ids=["registration of another name", "release", "refresh"],
)
def test_releases_refreshes_and_registrations_of_other_names_are_ignored(service, data):
    assert reply_to(service, data, local_ip=LOCAL_IP) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        bytes(12),
        b"\xff" * 50,
        query(BOB)[:-1],
        query(BOB)[:20],
        query(BOB)[:12] + b"\xc0\x0c\x00\x20\x00\x01",
    ],
)
def test_malformed_input_is_ignored_without_an_exception(service, data):
    assert reply_to(service, data, local_ip=LOCAL_IP) is None


def test_why_a_packet_was_ignored_is_said_in_a_dropped_event(service):
    source = ("192.0.2.99", 137)
    [ignored] = take(service, query(EVE), source=source, local_ip=LOCAL_IP)
    [malformed] = take(service, b"junk", source=source, local_ip=LOCAL_IP)
    assert isinstance(ignored, Dropped) and "EVE<03>" in ignored.reason
    assert "not ours" in ignored.reason
    assert isinstance(malformed, Dropped) and "malformed" in malformed.reason


@pytest.mark.parametrize(
    "options",
    [{"mac": b"\x00"}, {"ttl": -1}, {"ttl": 1 << 32}, {"scope": b"bad..scope"}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        NameService(Names(), **options)
