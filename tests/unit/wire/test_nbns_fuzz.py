"""Hostile bytes for parse_nbns and NameService: a result or WireError, nothing else, quickly."""

from __future__ import annotations

import contextlib
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from messengerd.protocol.nameservice import NameService
from messengerd.wire.errors import WireError
from messengerd.wire.layers.nbns import (
    NameServiceHeader,
)
from messengerd.wire.names import WILDCARD_NAME, NetBIOSName
from messengerd.wire.nbns import (
    HEADER_LENGTH,
    NAME_FLAG_ACT,
    NB_FLAG_G,
    NameServicePacket,
    NodeName,
    build_name_query_request,
    build_name_refresh_request,
    build_name_registration_request,
    build_name_registration_response,
    build_name_release_request,
    build_negative_name_query_response,
    build_node_status_request,
    build_node_status_response,
    build_positive_name_query_response,
    parse_nbns,
)
from tests.helpers import reply_to

FUZZ = settings(max_examples=300, deadline=None)
PER_PACKET_SECONDS = 0.25
"""Generous: a packet takes well under a millisecond to parse."""

BOB = NetBIOSName(b"BOB", 0x03)
SCOPED = NetBIOSName(b"RECVR", 0x03, b"corp.example")
WILDCARD = NetBIOSName.from_bytes16(WILDCARD_NAME)
VALID = [
    build_name_query_request(1, BOB),
    build_name_query_request(2, SCOPED, broadcast=False, recursion_desired=False),
    build_node_status_request(3),
    build_node_status_request(4, BOB),
    build_positive_name_query_response(5, BOB, "192.0.2.7"),
    build_negative_name_query_response(6, BOB),
    build_node_status_response(
        7, WILDCARD, [NodeName(BOB, NAME_FLAG_ACT), NodeName(SCOPED, NAME_FLAG_ACT | NB_FLAG_G)]
    ),
    build_name_registration_request(8, BOB, "192.0.2.7"),
    build_name_release_request(9, SCOPED, "192.0.2.7"),
    build_name_refresh_request(10, BOB, "192.0.2.7"),
    build_name_registration_response(11, BOB, "192.0.2.7", rcode=6),
]


class Owner:
    """A Directory owning BOB<03> and the workgroup."""

    def is_local(self, name):
        return name == BOB

    def is_group(self, name):
        return name == NetBIOSName(b"WORKGROUP", 0x00)

    def name_table(self):
        return [(BOB, False), (NetBIOSName(b"WORKGROUP", 0x00), True)]


SERVICE = NameService(Owner())


def survives(data: bytes) -> None:
    """parse_nbns gives a packet or WireError; the name service replies or stays silent;
    both in time."""
    started = time.perf_counter()
    with contextlib.suppress(WireError):
        assert isinstance(parse_nbns(data), NameServicePacket)
    reply = reply_to(SERVICE, data, local_ip="192.0.2.1")
    assert reply is None or isinstance(parse_nbns(reply), NameServicePacket)
    assert time.perf_counter() - started < PER_PACKET_SECONDS


@st.composite
def mutated(draw) -> bytes:
    """A valid packet with one of: bit flips, truncation, insertion, extension, a forced field."""
    data = bytearray(draw(st.sampled_from(VALID)))
    action = draw(st.sampled_from(["flip", "truncate", "insert", "extend", "count", "pointer"]))
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif action == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif action == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=40))
    elif action == "extend":
        data += draw(st.binary(min_size=1, max_size=600))
    elif action == "count":
        at = draw(st.sampled_from([4, 6, 8, 10]))
        struct.pack_into("!H", data, at, draw(st.sampled_from([0, 1, 2, 0x7FFF, 0xFFFF])))
    else:
        # A label pointer anywhere: to itself, forward, backward, into the header, in a loop.
        at = draw(st.integers(HEADER_LENGTH, len(data) - 2))
        target = draw(st.one_of(st.integers(0, 0x3FFF), st.just(at), st.just(HEADER_LENGTH)))
        struct.pack_into("!H", data, at, 0xC000 | target)
    return bytes(data)


@FUZZ
@given(st.binary(max_size=700))
def test_random_bytes_survive(data):
    survives(data)


@FUZZ
@given(st.binary(min_size=HEADER_LENGTH, max_size=700))
def test_random_bodies_behind_plausible_headers_survive(body):
    # Give random bytes a header that claims a question or an answer, so the parser goes deep.
    for flags, counts in ((0x0110, (1, 0, 0, 0)), (0x2910, (1, 0, 0, 1)), (0x8400, (0, 1, 0, 0))):
        survives(struct.pack("!6H", 1, flags, *counts) + body[HEADER_LENGTH:])


@FUZZ
@given(mutated())
def test_mutated_valid_packets_survive(data):
    survives(data)


@FUZZ
@given(
    st.one_of(mutated(), st.binary(max_size=100)).filter(lambda data: len(data) >= HEADER_LENGTH)
)
def test_layers_dissect_anything_and_rebuild_what_parse_nbns_accepts(data):
    # Like every scapy layer, the header raises struct.error on fewer bytes than its fields.
    packet = NameServiceHeader(data)
    try:
        parse_nbns(data)
    except WireError:
        return
    # Rebuild from the fields, not from scapy's cache of the bytes it was given.
    packet.clear_cache()
    assert bytes(packet) == data


def test_a_pointer_loop_is_refused_at_once():
    data = bytearray(build_name_registration_request(1, BOB, "192.0.2.7"))
    record_name_at = HEADER_LENGTH + len(BOB.encode()) + 4
    struct.pack_into("!H", data, HEADER_LENGTH, 0xC000 | record_name_at)
    struct.pack_into("!H", data, record_name_at, 0xC000 | HEADER_LENGTH)
    survives(bytes(data))


def test_a_pointer_to_itself_is_refused():
    data = bytearray(build_name_registration_request(1, BOB, "192.0.2.7"))
    record_name_at = HEADER_LENGTH + len(BOB.encode()) + 4
    struct.pack_into("!H", data, record_name_at, 0xC000 | record_name_at)
    try:
        parse_nbns(bytes(data))
    except WireError as exc:
        assert "points forward" in str(exc)
    else:
        raise AssertionError("a self-pointer parsed")
