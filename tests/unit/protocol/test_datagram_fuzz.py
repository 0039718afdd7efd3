"""Fuzzing the datagram parsers and machine: any bytes, valid datagrams bent out of shape.

parse_* may raise WireError and nothing else; DatagramService's receive_data and expire raise
nothing and never hold more than max_pending reassemblies (PROTOCOL.md §8: bound every length).
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from messengerd.core.limits import REASSEMBLY_TIMEOUT
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Dropped, EveryName, MessageReceived
from messengerd.wire.datagram import (
    BROADCAST,
    DATAGRAM_ERROR,
    DATAGRAM_QUERY_REQUEST,
    DIRECT_GROUP,
    DIRECT_UNIQUE,
    DirectDatagram,
    build_mailslot_datagrams,
    fragment_datagram,
    parse_datagram,
    parse_mailslot_write,
    parse_messenger_payload,
)
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from tests.helpers import drain, take

FUZZ = settings(max_examples=300, deadline=None)
MAX_PENDING = 4
"""Small, so a few fragments already force evictions."""
HEADER_AND_NAMES = 14 + 68
"""Where the SMB starts in a datagram between two unscoped names."""


def messenger_datagram(text: bytes, datagram_id: int = 7, msg_type: int = DIRECT_UNIQUE) -> bytes:
    (raw,) = build_mailslot_datagrams(
        b"ALICE",
        b"BOB",
        text,
        source_name=NetBIOSName(b"ALICE"),
        destination_name=NetBIOSName(b"BOB"),
        source_ip="10.0.0.1",
        datagram_id=datagram_id,
        msg_type=msg_type,
        max_datagram=0xFFFF,
    )
    return raw


VALID = [
    messenger_datagram(b"Hi"),
    messenger_datagram(b"", msg_type=BROADCAST),
    messenger_datagram(b"x" * 700, msg_type=DIRECT_GROUP),
]
FRAGMENTS = fragment_datagram(VALID[2], 256)


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes] = VALID + FRAGMENTS) -> bytes:
    """A valid datagram or fragment with bytes replaced, cut off or appended."""
    raw = bytearray(draw(st.sampled_from(originals)))
    # Header fields and the SMB words hold every length and offset: hit them most.
    position = st.one_of(
        st.integers(0, 13),
        st.integers(HEADER_AND_NAMES + 32, HEADER_AND_NAMES + 70),
        st.integers(0, len(raw) - 1),
    )
    for index, value in draw(st.lists(st.tuples(position, st.integers(0, 255)), max_size=6)):
        raw[index % len(raw)] = value
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=16))


any_bytes = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda kind, rest: bytes([kind]) + rest,
        st.sampled_from([DIRECT_UNIQUE, DIRECT_GROUP, BROADCAST, DATAGRAM_ERROR, 0x15]),
        st.binary(max_size=300),
    ),
)
datagrams = st.one_of(any_bytes, mutated(), st.sampled_from(VALID + FRAGMENTS))


def parse_all_the_way(raw: bytes) -> None:
    """Every parse_* layer that the bytes reach; WireError is the only way out."""
    with contextlib.suppress(WireError):
        datagram = parse_datagram(raw)
        if isinstance(datagram, DirectDatagram):
            write = parse_mailslot_write(datagram.user_data)
            parse_messenger_payload(write.data)


@FUZZ
@given(raw=datagrams)
def test_parsers_raise_only_wire_error(raw: bytes) -> None:
    parse_all_the_way(raw)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=400), mutated([VALID[0][HEADER_AND_NAMES:]])))
def test_mailslot_and_payload_parsers_raise_only_wire_error(raw: bytes) -> None:
    for parse in (parse_mailslot_write, parse_messenger_payload):
        with contextlib.suppress(WireError):
            parse(raw)


@FUZZ
@given(
    steps=st.lists(
        st.tuples(datagrams, st.floats(0, 1.5), st.booleans()),
        max_size=40,
    )
)
def test_receive_and_expire_never_raise_and_stay_bounded(
    steps: list[tuple[bytes, float, bool]],
) -> None:
    service = DatagramService(EveryName(), max_pending=MAX_PENDING)
    now = 0.0
    for raw, pause, expire_too in steps:
        now += pause
        events = take(service, raw, peer=("10.0.0.1", 138), now=now)
        if expire_too:
            service.expire(now)
            events += drain(service)
        for event in events:
            assert isinstance(event, MessageReceived | Dropped)
        assert service.pending <= MAX_PENDING
    service.expire(now + REASSEMBLY_TIMEOUT + 1)
    assert service.pending == 0


@FUZZ
@given(order=st.permutations(range(len(FRAGMENTS))), repeats=st.lists(st.integers(0, 2)))
def test_fragments_in_any_order_with_repeats_deliver_once(
    order: list[int], repeats: list[int]
) -> None:
    service = DatagramService(EveryName(), max_pending=MAX_PENDING)
    sequence = [FRAGMENTS[index] for index in order] + [FRAGMENTS[index] for index in repeats]

    events = [
        event for raw in sequence for event in take(service, raw, peer=("10.0.0.1", 138), now=0)
    ]

    delivered = [event for event in events if isinstance(event, MessageReceived)]
    assert delivered == [MessageReceived(b"ALICE", b"BOB", b"x" * 700, "mailslot")]


@FUZZ
@given(
    ids=st.lists(st.integers(0, 0xFFFF), max_size=60),
    query=st.booleans(),
)
def test_a_flood_of_first_fragments_never_exceeds_max_pending(ids: list[int], query: bool) -> None:
    service = DatagramService(EveryName(), max_pending=MAX_PENDING)
    first = bytearray(FRAGMENTS[0])
    for number, datagram_id in enumerate(ids):
        first[2:4] = datagram_id.to_bytes(2, "big")
        take(service, bytes(first), peer=("10.0.0.1", 138), now=number * 0.01)
        if query:
            take(service, bytes([DATAGRAM_QUERY_REQUEST]) + bytes(9), peer=("10.0.0.1", 138), now=0)
        assert service.pending <= MAX_PENDING
