"""SummaryLog: what a flood from peers makes the log say, bounded (issue 12, item 9)."""

from __future__ import annotations

import logging

from messengerd.core.ratelog import (
    MAX_SUMMARY_LINES,
    MAX_SUMMARY_PEERS,
    SUMMARY_INTERVAL,
    SummaryLog,
)

LOG = logging.getLogger("messengerd.tests.ratelog")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_peer_gets_its_first_line_then_one_count_an_interval(caplog):
    caplog.set_level(logging.INFO, LOG.name)
    clock = Clock()
    summary = SummaryLog(LOG, clock=clock)
    for number in range(100):
        summary.note("192.0.2.7", "session refused", f"#{number}")
    summary.note("192.0.2.7", "session closed", "bad frame")
    clock.now += SUMMARY_INTERVAL
    summary.note("192.0.2.7", "session refused", "#100")
    clock.now += SUMMARY_INTERVAL
    summary.note("192.0.2.8", "session refused", "quiet one")
    assert lines(caplog) == [
        "session refused from 192.0.2.7: #0",
        "100 more from 192.0.2.7 within 60 s: session refused x99 (last: #99), "
        "session closed x1 (last: bad frame)",
        "1 more from 192.0.2.7 within 60 s: session refused x1 (last: #100)",
        "session refused from 192.0.2.8: quiet one",
    ]


def test_with_debug_on_every_event_is_logged_and_nothing_summed_up(caplog):
    caplog.set_level(logging.DEBUG, LOG.name)
    summary = SummaryLog(LOG, clock=Clock())
    for number in range(5):
        summary.note("192.0.2.7", "session refused", f"#{number}")
    summary.flush()
    assert lines(caplog) == [f"session refused from 192.0.2.7: #{n}" for n in range(5)]


def test_many_peers_make_a_bounded_number_of_lines(caplog):
    caplog.set_level(logging.INFO, LOG.name)
    clock = Clock()
    summary = SummaryLog(LOG, clock=clock)
    for _ in range(3):
        for host in range(1000):
            summary.note(f"10.0.{host // 256}.{host % 256}", "registration defended", "BOB<03>")
    summary.flush()
    logged = lines(caplog)
    firsts = min(MAX_SUMMARY_LINES, MAX_SUMMARY_PEERS)
    assert len(logged) == 2 * firsts + 1, "first lines, their counts, one for the others"
    assert logged[-1].startswith(f"{3000 - 3 * firsts} more from other peers within 60 s")
