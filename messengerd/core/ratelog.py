"""Log lines a peer can cause, summed up: one line per peer a minute, not one per packet.

A host on the LAN can make the receiver refuse a thousand connections or messages a second;
a log line for each would fill the journal and the disk, and bury everything else. So, at
the default level, the first such event from a peer is logged as it is and the rest from
that peer over the next SUMMARY_INTERVAL are counted and logged as one line:
`37 more from 192.0.2.7 within 60 s: session packet dropped x30 (last: ...), ...`. With -v
(DEBUG) every event is logged on its own instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

SUMMARY_INTERVAL = 60.0
"""Seconds over which one peer's events are summed up in one line."""

MAX_SUMMARY_LINES = 20
"""Lines a SummaryLog writes per SUMMARY_INTERVAL for every peer together, so a flood from
many (spoofed) addresses cannot fill the disk either; the rest go into one line for
"other peers"."""

MAX_SUMMARY_PEERS = 20
"""Peers summed up each on its own line at once; events from more go into the line for
"other peers", which names the last of them."""

OTHER_PEERS = "other peers"


@dataclass
class _Window:
    """Events since `started`: how many of each kind, and the last one's detail."""

    started: float
    counts: Counter[str] = field(default_factory=Counter)
    last: dict[str, str] = field(default_factory=dict)


class SummaryLog:
    """Logs what peers do too often to log each time: every event at DEBUG when that is on,
    else the first from a peer at `level` and then, once a SUMMARY_INTERVAL while the peer
    keeps at it, the count of the rest. One per place that logs, e.g. the session
    listener's refusals.

    At most `max_lines` first lines and `max_peers` summaries an interval, plus one for the
    other peers: bounded however many addresses a flood comes from. `clock` is a monotonic
    clock in seconds, injected so tests need not wait. A summary is written when its
    interval is over: on the next event, or, on an event loop, by a timer.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.INFO,
        interval: float = SUMMARY_INTERVAL,
        max_lines: int = MAX_SUMMARY_LINES,
        max_peers: int = MAX_SUMMARY_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self.max_lines = max_lines
        self.max_peers = max_peers
        self.clock = clock
        self._peers: OrderedDict[str, _Window] = OrderedDict()
        """Peers whose first event was logged, by when their window started."""
        now = clock()
        self._other = _Window(started=now)
        """Events from peers beyond max_peers or max_lines, summed up once an interval."""
        self._lines = 0
        """First lines written in the interval `self._other` covers."""
        self._timer: asyncio.TimerHandle | None = None

    def note(self, peer: str, what: str, detail: str = "") -> None:
        """`peer` caused `what` (a short kind, e.g. "session refused"); `detail` says more.

        `detail` must already be safe to log (messengerd.core.visible).
        """
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s from %s: %s", what, peer, detail)
            return
        now = self.clock()
        self._expire(now)
        window = self._peers.get(peer)
        if window is None:
            if len(self._peers) < self.max_peers and self._lines < self.max_lines:
                self._lines += 1
                self._peers[peer] = _Window(started=now)
                self.logger.log(self.level, "%s from %s: %s", what, peer, detail)
                self._schedule()
                return
            window, detail = self._other, f"{peer}: {detail}" if detail else peer
            self._schedule()
        window.counts[what] += 1
        window.last[what] = detail

    def flush(self) -> None:
        """Write every summary now, whether or not its interval is over (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for peer, window in self._peers.items():
            self._summarise(peer, window)
        self._peers.clear()
        self._summarise(OTHER_PEERS, self._other)
        self._other = _Window(started=self.clock())
        self._lines = 0

    def _expire(self, now: float) -> None:
        """Write the summaries whose interval is over by `now`."""
        while self._peers:
            peer, window = next(iter(self._peers.items()))
            if now - window.started < self.interval:
                break
            del self._peers[peer]
            self._summarise(peer, window)
            if window.counts:
                # Still at it: what it does next is summed up too, not logged one by one.
                self._peers[peer] = _Window(started=now)
        if now - self._other.started >= self.interval:
            self._summarise(OTHER_PEERS, self._other)
            self._other = _Window(started=now)
            self._lines = 0

    def _summarise(self, peer: str, window: _Window) -> None:
        total = sum(window.counts.values())
        if not total:
            return
        kinds = ", ".join(
            f"{what} x{count}" + (f" (last: {window.last[what]})" if window.last[what] else "")
            for what, count in window.counts.most_common()
        )
        self.logger.log(
            self.level, "%d more from %s within %.0f s: %s", total, peer, self.interval, kinds
        )

    def _schedule(self) -> None:
        """On an event loop, write the summaries when they are due even if nothing else
        happens; elsewhere (unit tests with a fake clock) the next event writes them."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self._next_due() - self.clock(), self._tick)

    def _next_due(self) -> float:
        starts = [self._other.started] + [window.started for window in self._peers.values()]
        return min(starts) + self.interval

    def _tick(self) -> None:
        self._timer = None
        self._expire(self.clock())
        if self._peers or self._other.counts:
            self._schedule()
