"""The datagram service machine: mailslot datagrams in, Messenger messages out (PROTOCOL.md §5)."""

from __future__ import annotations

import random

import pytest

from messengerd.core.limits import MAX_PENDING_DATAGRAMS, MAX_TEXT_BYTES, REASSEMBLY_TIMEOUT
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Dropped, MessageReceived
from messengerd.wire.datagram import (
    BROADCAST,
    DIRECT_GROUP,
    FLAG_FIRST,
    FLAG_MORE,
    build_datagram,
    build_mailslot_datagrams,
    build_mailslot_write,
    build_messenger_payload,
    fragment_datagram,
)
from messengerd.wire.names import NetBIOSName
from tests.helpers import Names, drain, take

BOB = NetBIOSName(b"BOB")
BOBS_PC = NetBIOSName(b"BOBS-PC")
WORKGROUP = NetBIOSName(b"WORKGROUP")
ALICE = NetBIOSName(b"ALICE")
PEER = ("10.0.0.1", 138)


def Directory() -> Names:
    """BOB<03> and BOBS-PC<03> are ours; we listen on WORKGROUP<03>."""
    return Names(local=[BOB, BOBS_PC], groups=[WORKGROUP])


@pytest.fixture
def service() -> DatagramService:
    return DatagramService(Directory())


def message(
    to: bytes = b"BOB",
    text: bytes = b"The UPS is on battery.",
    *,
    destination: NetBIOSName = BOB,
    datagram_id: int = 1,
    **options: object,
) -> bytes:
    """One whole Messenger datagram from ALICE."""
    (raw,) = build_mailslot_datagrams(
        b"ALICE",
        to,
        text,
        source_name=ALICE,
        destination_name=destination,
        source_ip=PEER[0],
        datagram_id=datagram_id,
        max_datagram=0xFFFF,
        **options,  # type: ignore[arg-type]
    )
    return raw


def feed(service: DatagramService, *datagrams: bytes, now: float = 0.0) -> list[object]:
    return [event for raw in datagrams for event in take(service, raw, peer=PEER, now=now)]


def expire(service: DatagramService, now: float) -> list[object]:
    service.expire(now)
    return drain(service)


def messages(events: list[object]) -> list[MessageReceived]:
    return [event for event in events if isinstance(event, MessageReceived)]


def test_direct_message_to_our_alias_is_delivered_with_exact_text(service) -> None:
    text = b"Line one\x14Line two \x82\xe9 end"

    events = feed(service, message(b"BOB", text))

    assert events == [MessageReceived(b"ALICE", b"BOB", text, path="mailslot")]


def test_to_matches_our_alias_whatever_its_case(service) -> None:
    assert messages(feed(service, message(b"bob", destination=ALICE)))


def test_star_broadcast_is_accepted(service) -> None:
    raw = message(b"*", b"Server going down", msg_type=BROADCAST, destination=NetBIOSName(b"*"))

    assert feed(service, raw) == [
        MessageReceived(b"ALICE", b"*", b"Server going down", path="mailslot")
    ]


def test_message_to_the_workgroup_is_accepted(service) -> None:
    raw = message(b"WORKGROUP", b"Lunch", msg_type=DIRECT_GROUP, destination=WORKGROUP)

    assert messages(feed(service, raw)) == [
        MessageReceived(b"ALICE", b"WORKGROUP", b"Lunch", path="mailslot")
    ]


def test_datagram_sent_to_our_name_is_accepted_whatever_to_says(service) -> None:
    assert messages(feed(service, message(b"Bob Smith", destination=BOBS_PC)))


def test_message_to_someone_else_is_dropped_with_the_reason(service) -> None:
    events = feed(service, message(b"CAROL", destination=NetBIOSName(b"CAROL")))

    assert len(events) == 1 and isinstance(events[0], Dropped)
    assert "CAROL" in events[0].reason


def test_other_mailslot_is_dropped_naming_it(service) -> None:
    browse = build_datagram(
        build_mailslot_write(b"\x01\x00announcement", mailslot_name=b"\\MAILSLOT\\BROWSE"),
        source_name=ALICE,
        destination_name=WORKGROUP,
        source_ip=PEER[0],
        datagram_id=9,
        msg_type=DIRECT_GROUP,
    )

    events = feed(service, browse)

    assert len(events) == 1 and isinstance(events[0], Dropped)
    assert "BROWSE" in events[0].reason


def test_mailslot_name_compares_case_insensitively(service) -> None:
    payload = build_messenger_payload(b"ALICE", b"BOB", b"hi")
    raw = build_datagram(
        build_mailslot_write(payload, mailslot_name=b"\\mailslot\\Messngr"),
        source_name=ALICE,
        destination_name=BOB,
        source_ip=PEER[0],
        datagram_id=3,
    )

    assert messages(feed(service, raw)) == [MessageReceived(b"ALICE", b"BOB", b"hi", "mailslot")]


def test_malformed_datagram_is_dropped(service) -> None:
    events = feed(service, b"\x10\x02garbage")

    assert len(events) == 1 and isinstance(events[0], Dropped)
    assert "malformed" in events[0].reason


def test_error_datagram_is_dropped(service) -> None:
    events = feed(service, bytes.fromhex("13 02 0007 0a000001 008a 82"))

    assert [type(event) for event in events] == [Dropped]


LONG_TEXT = bytes(range(32, 127)) * 12


def three_fragments(datagram_id: int = 0x0042) -> list[bytes]:
    fragments = fragment_datagram(message(b"BOB", LONG_TEXT, datagram_id=datagram_id), 500)
    assert len(fragments) == 3
    return fragments


def test_fragments_in_order_are_reassembled(service) -> None:
    first, second, last = three_fragments()

    assert feed(service, first) == []
    assert feed(service, second) == []
    assert service.pending == 1
    assert feed(service, last) == [MessageReceived(b"ALICE", b"BOB", LONG_TEXT, "mailslot")]
    assert service.pending == 0


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 2, 0), (2, 0, 1), (0, 2, 1)])
def test_fragments_out_of_order_are_reassembled(service, order) -> None:
    fragments = three_fragments()

    events = feed(service, *(fragments[index] for index in order))

    assert events == [MessageReceived(b"ALICE", b"BOB", LONG_TEXT, "mailslot")]


def test_duplicate_fragments_are_harmless(service) -> None:
    first, second, last = three_fragments()

    events = feed(service, first, second, first, second, last)

    assert messages(events) == [MessageReceived(b"ALICE", b"BOB", LONG_TEXT, "mailslot")]
    assert service.pending == 0


def test_fragments_of_two_datagrams_interleave(service) -> None:
    one, two = three_fragments(1), three_fragments(2)

    events = feed(service, one[0], two[2], one[1], two[0], one[2], two[1])

    assert len(messages(events)) == 2


def test_overlapping_fragments_that_agree_are_reassembled(service) -> None:
    whole = message(b"BOB", LONG_TEXT)
    longer = fragment_datagram(whole, 600)
    _, second, last = three_fragments(datagram_id=1)

    assert messages(feed(service, longer[0], second, last))


def test_overlapping_fragments_that_disagree_are_dropped(service) -> None:
    first, second, last = three_fragments()
    forged = second[:-10] + b"X" * 10
    bigger = fragment_datagram(message(b"BOB", LONG_TEXT.replace(b"~", b"!")), 600)[1]

    events = feed(service, first, second, bigger, forged, last)

    assert not messages(events)
    assert any("different bytes" in event.reason for event in events if isinstance(event, Dropped))


def test_first_flag_on_a_later_fragment_is_dropped(service) -> None:
    fragment = three_fragments()[1]
    flagged = bytes([fragment[0], fragment[1] | FLAG_FIRST]) + fragment[2:]

    assert [type(event) for event in feed(service, flagged)] == [Dropped]
    assert service.pending == 0


def test_missing_fragment_expires_after_two_seconds_and_yields_nothing(service) -> None:
    first, _, last = three_fragments()
    feed(service, first, now=100.0)
    feed(service, last, now=100.5)

    assert service.next_deadline() == 100.0 + REASSEMBLY_TIMEOUT
    assert expire(service, 100.0 + REASSEMBLY_TIMEOUT - 0.01) == []
    assert service.pending == 1
    expired = expire(service, 100.0 + REASSEMBLY_TIMEOUT)
    assert [type(event) for event in expired] == [Dropped]
    assert "timed out" in expired[0].reason
    assert service.pending == 0


def test_late_fragment_after_the_timeout_does_not_complete_the_datagram(service) -> None:
    first, second, last = three_fragments()
    feed(service, first, second, now=0.0)

    events = feed(service, last, now=REASSEMBLY_TIMEOUT + 1)

    assert not messages(events)
    assert any("timed out" in event.reason for event in events if isinstance(event, Dropped))
    assert service.pending == 1  # the late last fragment waits alone, and will expire too


def first_fragment(datagram_id: int) -> bytes:
    return build_datagram(
        b"\xffSMB" + b"\x00" * 60,
        source_name=ALICE,
        destination_name=BOB,
        source_ip="10.9.8.7",
        datagram_id=datagram_id,
        flags=FLAG_FIRST | FLAG_MORE,
    )


def test_pending_stays_bounded_under_a_flood_of_first_fragments() -> None:
    service = DatagramService(Directory())
    evictions = 0

    for datagram_id in range(3 * MAX_PENDING_DATAGRAMS):
        events = take(service, first_fragment(datagram_id), peer=PEER, now=datagram_id * 1e-3)
        evictions += sum(
            "evicted" in event.reason for event in events if isinstance(event, Dropped)
        )
        assert service.pending <= MAX_PENDING_DATAGRAMS

    assert service.pending == MAX_PENDING_DATAGRAMS
    assert evictions == 2 * MAX_PENDING_DATAGRAMS


def test_eviction_drops_the_oldest_reassembly() -> None:
    service = DatagramService(Directory(), max_pending=2)
    one, two, three = three_fragments(1), three_fragments(2), three_fragments(3)

    events = feed(service, one[0], two[0], three[0], *two[1:], *three[1:], *one[1:])

    assert events[0] == Dropped(
        "datagram 0x0001 from 10.0.0.1 evicted: 2 datagrams already waiting for fragments"
    )
    assert len(messages(events)) == 2  # datagram 1 lost its first fragment and never completes
    assert service.pending == 1


def test_fragments_past_the_byte_limit_are_dropped() -> None:
    service = DatagramService(Directory(), max_datagram_bytes=1000)

    events = feed(service, *three_fragments())

    assert not messages(events)
    assert any("past the limit" in event.reason for event in events if isinstance(event, Dropped))


def test_too_many_fragments_are_dropped(service) -> None:
    fragments = fragment_datagram(message(b"BOB", LONG_TEXT), 8)
    random.Random(1).shuffle(fragments)

    events = feed(service, *fragments)

    assert not messages(events)
    assert any("fragments" in event.reason for event in events if isinstance(event, Dropped))


def test_text_over_the_limit_is_dropped(service) -> None:
    events = feed(service, message(b"BOB", b"x" * (MAX_TEXT_BYTES + 1)))

    assert len(events) == 1 and isinstance(events[0], Dropped)
    assert "text" in events[0].reason


def test_text_at_the_limit_is_delivered(service) -> None:
    assert messages(feed(service, message(b"BOB", b"x" * MAX_TEXT_BYTES)))


def test_split_long_text_arrives_as_several_messages(service) -> None:
    datagrams = build_mailslot_datagrams(
        b"ALICE",
        b"BOB",
        LONG_TEXT,
        source_name=ALICE,
        destination_name=BOB,
        source_ip=PEER[0],
        datagram_id=5,
    )

    received = messages(feed(service, *datagrams))

    assert len(received) == len(datagrams) > 1
    assert b"".join(event.text for event in received) == LONG_TEXT


class BrokenDirectory(Names):
    def is_local(self, name: NetBIOSName) -> bool:
        raise RuntimeError("directory bug")


def test_a_bug_in_what_the_machine_calls_is_raised_not_taken_for_a_peers_fault() -> None:
    service = DatagramService(BrokenDirectory())

    with pytest.raises(RuntimeError, match="directory bug"):
        take(service, message(b"BOB"), peer=PEER, now=0.0)


def test_unknown_codepage_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="code page"):
        DatagramService(Directory(), codepage="no-such-codepage")


def Rene() -> Names:
    """Owns RENÉ<03> in cp850, where É is 0x90."""
    return Names(local=[NetBIOSName(b"REN\x90")])


def test_to_is_upper_cased_through_the_codepage() -> None:
    service = DatagramService(Rene(), codepage="cp850")

    # cp850 0x82 is é, whose upper case is É: "ren\x82" (rené) typed by the sender finds RENÉ.
    assert messages(feed(service, message(b"ren\x82", destination=ALICE)))
