"""Anti-spam policy: who may leave messages here, and how often (the `[policy]` settings).

A message is refused when its source address or its From name is on a deny list, when an
allow list exists and it is not on it, or, with a rate limit set, when its source has sent
too many messages too fast. A deny entry wins over an allow entry, so `allow 10.0.0.0/8`
and `deny 10.0.0.5` together let in all of 10/8 but one host.

There is no rate limit unless one is set: a receiver on loopback takes thousands a second
from the software under test (DESIGN.md, use 3; bench/). A UPS or monitoring tool sends a
few alerts a minute at worst, while the 2003 waves of messenger spam sent hundreds a second
to every address, so `rate_limit = 30` (a minute) with the default burst is a fair start.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from messengerd.core.buckets import TokenBuckets
from messengerd.core.message import Message
from messengerd.core.ratelog import SummaryLog
from messengerd.core.visible import visible_text

log = logging.getLogger(__name__)

DEFAULT_RATE_BURST = 10
"""Messages one source may send at once before the rate applies: `net send *` arrives once
per interface, and a sender that gets no ack retries, so a handful in a second is normal."""

MAX_TRACKED_SOURCES = 4096
"""Source addresses whose rate buckets are kept; the least recently seen is forgotten.

A forgotten source starts again with a full bucket, so this bounds memory, not spam from
an attacker with more addresses than this (spoofed UDP can have any number)."""

SECONDS_PER_MINUTE = 60.0


class Reason(enum.StrEnum):
    """Why a message was let in or refused; the keys of Policy.counters."""

    ALLOWED = "allowed"
    DENIED_SOURCE = "denied source"
    SOURCE_NOT_ALLOWED = "source not on the allow list"
    DENIED_SENDER = "denied sender"
    SENDER_NOT_ALLOWED = "sender not on the allow list"
    RATE_LIMITED = "rate limited"


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one message."""

    allowed: bool
    reason: Reason


ALLOWED = Verdict(True, Reason.ALLOWED)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_host(peer: str) -> str:
    """The address part of a Message.peer (`"192.0.2.7:1025"` -> `"192.0.2.7"`)."""
    host, colon, port = peer.rpartition(":")
    if not colon or not port.isdigit():
        return peer
    return host.removeprefix("[").removesuffix("]")


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """`192.0.2.7` or `192.0.2.0/24` entries as networks; ValueError names a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an address or network (e.g. 192.0.2.7 or 192.0.2.0/24)"
            ) from None
    return networks


class Policy:
    """Allow and deny lists by source network and From name, and a per-source rate limit.

    From names match case-insensitively (NetBIOS names ignore case) as shell globs:
    `SPAM*`, `?ACK`. `rate_limit` is messages a minute (None or 0: no limit), `clock` a
    monotonic clock in seconds, injected so tests need not wait.
    """

    def __init__(
        self,
        *,
        allow_sources: Iterable[str] = (),
        deny_sources: Iterable[str] = (),
        allow_senders: Iterable[str] = (),
        deny_senders: Iterable[str] = (),
        rate_limit: float | None = None,
        rate_burst: int = DEFAULT_RATE_BURST,
        store_refused: bool = False,
        max_sources: int = MAX_TRACKED_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """ValueError for an entry that is not an address/network, or a negative rate."""
        self.allow_sources = parse_networks(allow_sources)
        self.deny_sources = parse_networks(deny_sources)
        self.allow_senders = [pattern.casefold() for pattern in allow_senders]
        self.deny_senders = [pattern.casefold() for pattern in deny_senders]
        if rate_limit is not None and rate_limit < 0:
            raise ValueError(f"rate_limit must be 0 or more messages a minute, not {rate_limit}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be 1 or more, not {max_sources}")
        if rate_burst < 1:
            raise ValueError(f"rate_burst must be 1 or more, not {rate_burst}")
        self.rate_per_second = (rate_limit or 0.0) / SECONDS_PER_MINUTE
        self.rate_burst = rate_burst
        self.store_refused = store_refused
        self.max_sources = max_sources
        self.clock = clock
        self.counters: Counter[Reason] = Counter()
        self._buckets = TokenBuckets(self.rate_per_second, rate_burst, max_sources)
        # One line per source a minute, with the count, not one per message.
        self._refusals = SummaryLog(log, clock=clock)

    def check(self, message: Message) -> Verdict:
        """Let `message` in or refuse it; counts every verdict, logs refusals (rate-limited)."""
        return self.check_source(peer_host(message.peer), message.sender)

    def check_source(self, host: str, sender: str) -> Verdict:
        """The verdict for a message from address `host` with From name `sender`."""
        verdict = self._judge(host, sender)
        self.counters[verdict.reason] += 1
        if not verdict.allowed:
            self._log_refusal(host, sender, verdict.reason)
        return verdict

    def _judge(self, host: str, sender: str) -> Verdict:
        address = None
        if self.deny_sources or self.allow_sources:
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(host)
        if address is not None and _in(address, self.deny_sources):
            return Verdict(False, Reason.DENIED_SOURCE)
        if self.allow_sources and (address is None or not _in(address, self.allow_sources)):
            return Verdict(False, Reason.SOURCE_NOT_ALLOWED)
        name = sender.casefold()
        if _matches(name, self.deny_senders):
            return Verdict(False, Reason.DENIED_SENDER)
        if self.allow_senders and not _matches(name, self.allow_senders):
            return Verdict(False, Reason.SENDER_NOT_ALLOWED)
        if self.rate_per_second and not self._take_token(host):
            return Verdict(False, Reason.RATE_LIMITED)
        return ALLOWED

    def _take_token(self, host: str) -> bool:
        """Token bucket: `rate_burst` tokens, refilled at the rate; a message takes one."""
        return self._buckets.take(host, self.clock())

    def _log_refusal(self, host: str, sender: str, reason: Reason) -> None:
        stored = "; storing it" if self.store_refused else ""
        self._refusals.note(
            host, f"message refused ({reason})", f"From {visible_text(sender)}{stored}"
        )

    def flush_log(self) -> None:
        """Log the count of refusals not yet logged (at shutdown)."""
        self._refusals.flush()

    @property
    def tracked_sources(self) -> int:
        """Source addresses remembered now (at most max_sources)."""
        return len(self._buckets)

    @property
    def refused(self) -> int:
        """Messages refused so far, for every reason."""
        return sum(count for reason, count in self.counters.items() if reason != Reason.ALLOWED)


def _in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
