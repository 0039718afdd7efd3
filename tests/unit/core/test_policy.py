"""Policy: the deny and allow lists and the rate limit refuse what they should, nothing else."""

from __future__ import annotations

import logging

import pytest

from messengerd.core.message import Message
from messengerd.core.policy import DEFAULT_RATE_BURST, Policy, Reason, peer_host
from messengerd.core.ratelog import MAX_SUMMARY_LINES, SUMMARY_INTERVAL


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(sender: str = "ADMIN", peer: str = "192.0.2.7:1025") -> Message:
    return Message(sender, "BOB", "Backup finished", "session", peer)


def test_peer_host_takes_the_address_of_a_peer():
    assert peer_host("192.0.2.7:1025") == "192.0.2.7"
    assert peer_host("[2001:db8::1]:139") == "2001:db8::1"
    assert peer_host("192.0.2.7") == "192.0.2.7"


def test_no_lists_and_no_rate_limit_allow_everything():
    policy = Policy()
    for index in range(100):
        assert policy.check(message(sender=f"S{index}")).allowed
    assert policy.counters == {Reason.ALLOWED: 100}
    assert policy.refused == 0


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("10.1.2.3:1025", False),
        ("10.255.255.255:138", False),
        ("192.0.2.66:1025", False),
        ("192.0.2.67:1025", True),
        ("11.0.0.1:1025", True),
        ("127.0.0.1:40000", True),
    ],
)
def test_deny_sources_refuse_listed_addresses_and_networks_only(peer, allowed):
    policy = Policy(deny_sources=["10.0.0.0/8", "192.0.2.66"], rate_limit=None)
    verdict = policy.check(message(peer=peer))
    assert verdict.allowed is allowed
    assert verdict.reason is (Reason.ALLOWED if allowed else Reason.DENIED_SOURCE)


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        ("192.168.1.20:1025", Reason.ALLOWED),
        ("192.168.1.5:1025", Reason.DENIED_SOURCE),
        ("192.168.2.20:1025", Reason.SOURCE_NOT_ALLOWED),
    ],
)
def test_an_allow_list_admits_only_its_networks_and_deny_wins_over_allow(peer, reason):
    policy = Policy(allow_sources=["192.168.1.0/24"], deny_sources=["192.168.1.5"])
    assert policy.check(message(peer=peer)).reason is reason


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("SPAMMER", Reason.DENIED_SENDER),
        ("spam-king", Reason.DENIED_SENDER),
        ("Messenger Service", Reason.DENIED_SENDER),
        ("UPS", Reason.ALLOWED),
        ("ADMIN", Reason.ALLOWED),
        ("NOTSPAM", Reason.ALLOWED),
    ],
)
def test_deny_senders_match_globs_ignoring_case(sender, reason):
    policy = Policy(deny_senders=["spam*", "MESSENGER SERVICE"], rate_limit=None)
    assert policy.check(message(sender=sender)).reason is reason


def test_allow_senders_refuse_every_other_name():
    policy = Policy(allow_senders=["UPS", "backup-*"], rate_limit=None)
    assert policy.check(message(sender="ups")).allowed
    assert policy.check(message(sender="BACKUP-SRV1")).allowed
    assert policy.check(message(sender="ADMIN")).reason is Reason.SENDER_NOT_ALLOWED


def test_bad_network_entries_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an address or network"):
        Policy(deny_sources=["10.0.0.0/33"])


def test_rate_limit_refuses_past_the_burst_and_refills_at_the_rate():
    clock = Clock()
    policy = Policy(rate_limit=60, rate_burst=3, clock=clock)  # one token a second
    verdicts = [policy.check(message()).allowed for _ in range(5)]
    assert verdicts == [True, True, True, False, False]
    clock.now += 1.0
    assert policy.check(message()).allowed
    assert not policy.check(message()).allowed
    clock.now += 10.0  # refills, but never past the burst
    assert [policy.check(message()).allowed for _ in range(4)] == [True, True, True, False]
    assert policy.counters[Reason.RATE_LIMITED] == 4
    assert policy.counters[Reason.ALLOWED] == 7


def test_rate_limit_is_per_source_address_not_per_port_or_name():
    clock = Clock()
    policy = Policy(rate_limit=1, rate_burst=2, clock=clock)
    assert policy.check(message(sender="A", peer="192.0.2.7:1025")).allowed
    assert policy.check(message(sender="B", peer="192.0.2.7:1026")).allowed
    assert not policy.check(message(sender="C", peer="192.0.2.7:1027")).allowed
    assert policy.check(message(peer="192.0.2.8:1025")).allowed, "another source is not limited"


def test_refused_messages_take_no_tokens():
    clock = Clock()
    policy = Policy(rate_limit=1, rate_burst=1, deny_senders=["SPAM"], clock=clock)
    for _ in range(10):
        assert policy.check(message(sender="SPAM")).reason is Reason.DENIED_SENDER
    assert policy.check(message(sender="UPS")).allowed


def test_there_is_no_rate_limit_unless_one_is_set():
    policy = Policy(clock=Clock())
    assert all(policy.check(message()).allowed for _ in range(1000))


def test_a_rate_limit_allows_the_default_burst_then_refuses():
    policy = Policy(rate_limit=30, clock=Clock())
    verdicts = [policy.check(message()).allowed for _ in range(DEFAULT_RATE_BURST + 1)]
    assert verdicts == [True] * DEFAULT_RATE_BURST + [False]


def test_tracked_sources_are_bounded_least_recently_seen_forgotten():
    clock = Clock()
    policy = Policy(rate_limit=1, rate_burst=1, max_sources=3, clock=clock)
    assert policy.check(message(peer="192.0.2.1:1")).allowed
    assert not policy.check(message(peer="192.0.2.1:1")).allowed
    for host in range(2, 10):
        policy.check(message(peer=f"192.0.2.{host}:1"))
    assert policy.tracked_sources == 3
    assert policy.check(message(peer="192.0.2.1:1")).allowed, "forgotten: a full bucket again"


def test_refusals_are_logged_once_per_interval_per_source_with_a_count(caplog):
    clock = Clock()
    policy = Policy(deny_sources=["192.0.2.0/24"], rate_limit=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="messengerd.core.policy"):
        for _ in range(50):
            policy.check(message(sender="SPAM\x1b[2J"))
        clock.now += SUMMARY_INTERVAL
        policy.check(message(sender="SPAM"))
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "message refused (denied source) from 192.0.2.7: From SPAM<ESC>[2J",
        "49 more from 192.0.2.7 within 60 s: "
        "message refused (denied source) x49 (last: From SPAM<ESC>[2J)",
    ]
    assert policy.counters[Reason.DENIED_SOURCE] == 51


def test_a_flood_from_many_sources_logs_a_bounded_number_of_lines(caplog):
    clock = Clock()
    policy = Policy(deny_sources=["10.0.0.0/8"], clock=clock)
    with caplog.at_level(logging.INFO, logger="messengerd.core.policy"):
        for host in range(1000):
            policy.check(message(peer=f"10.0.{host // 256}.{host % 256}:138"))
        clock.now += SUMMARY_INTERVAL
        policy.check(message(peer="10.9.9.9:138"))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == MAX_SUMMARY_LINES + 2
    assert lines[-2].startswith(
        f"{1000 - MAX_SUMMARY_LINES} more from other peers within 60 s: "
        f"message refused (denied source) x{1000 - MAX_SUMMARY_LINES} "
        "(last: 10.0.3.231: From ADMIN)"
    )
    assert policy.refused == 1001


def test_store_refused_is_carried_for_the_daemon():
    assert Policy().store_refused is False
    assert Policy(store_refused=True).store_refused is True
