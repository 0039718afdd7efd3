"""Fuzzing the connectionless DCE/RPC parsers: any bytes give a result or a WireError, never
another exception, and what they return stays within the bounds they promise."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messengerd.core.limits import MAX_EPT_TOWER_BYTES, MAX_FIELD_BYTES, MAX_TEXT_BYTES
from messengerd.wire import rpc
from messengerd.wire.errors import WireError

ACTIVITY = UUID(int=0x1234)
(REQUEST,) = rpc.build_netr_send_message_call(b"ALICE", b"BOB", b"Hello", act_id=ACTIVITY)
TOWER = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 1026, "127.0.0.1")
EPT_REQUEST_STUB = rpc.build_ept_map_request(TOWER)
EPT_RESPONSE_STUB = rpc.build_ept_map_response([TOWER], max_towers=4)
SEEDS = [REQUEST, EPT_REQUEST_STUB, EPT_RESPONSE_STUB, TOWER]


@st.composite
def mutated(draw, seeds=SEEDS):
    """A valid encoding with a few bytes overwritten, cut short, or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


inputs = st.one_of(st.binary(max_size=400), mutated())
fuzz = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


def attempt(parse, data):
    try:
        return parse(data)
    except WireError:
        return None


@fuzz
@given(inputs, st.booleans())
@example(REQUEST, True)
def test_pdu_and_netr_send_message_parsers_never_crash(data, little):
    pdu = attempt(rpc.parse_pdu, data)
    if pdu is not None:
        assert len(pdu.body) == pdu.header.length
        assert rpc.build_pdu(pdu.header, pdu.body)[rpc.HEADER_LENGTH :] == pdu.body
        data = pdu.body
    request = attempt(
        lambda raw: rpc.parse_netr_send_message_request(raw, little_endian=little), data
    )
    if request is not None:
        assert len(request.sender) <= MAX_FIELD_BYTES and len(request.recipient) <= MAX_FIELD_BYTES
        assert len(request.text) <= MAX_TEXT_BYTES
        assert b"\x00" not in request.sender + request.recipient + request.text


@fuzz
@given(inputs, st.booleans())
def test_ept_parsers_never_crash(data, little):
    request = attempt(lambda raw: rpc.parse_ept_map_request(raw, little_endian=little), data)
    if request is not None and request.map_tower is not None:
        assert len(request.map_tower) <= MAX_EPT_TOWER_BYTES
        attempt(rpc.parse_tower, request.map_tower)
    response = attempt(lambda raw: rpc.parse_ept_map_response(raw, little_endian=little), data)
    if response is not None:
        assert all(len(tower) <= MAX_EPT_TOWER_BYTES for tower in response.towers)
    attempt(rpc.parse_tower, data)


@fuzz
@given(inputs, st.booleans())
def test_body_parsers_never_crash(data, little):
    attempt(lambda raw: rpc.parse_fack_body(raw, little_endian=little), data)
    attempt(lambda raw: rpc.parse_quit_body(raw, little_endian=little), data)
    attempt(lambda raw: rpc.parse_status_body(raw, little_endian=little), data)
    attempt(lambda raw: rpc.parse_call_reply(raw, act_id=ACTIVITY, seqnum=0), data)


@pytest.mark.parametrize("count", [0xFFFFFFFF, 0x7FFFFFFF, 4097, 8193])
def test_huge_counts_are_refused_without_reading_them(count):
    huge = count.to_bytes(4, "little")
    stub = huge + bytes(4) + huge + b"x" * 64
    with pytest.raises(WireError):
        rpc.parse_netr_send_message_request(stub)
