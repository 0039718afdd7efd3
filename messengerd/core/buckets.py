"""Token buckets per source address: how the receiver rate-limits what one host may cost it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key (a source address): `burst` tokens, refilled at `rate` a
    second; each event takes one. The least recently seen key is forgotten past `max_keys`.

    A forgotten key starts again with a full bucket, so `max_keys` bounds memory, not what
    an attacker with more addresses than that (spoofed UDP has any number) can get through.
    Time is passed in (`now`, seconds on any monotonic clock), so the protocol machines can
    use it too.
    """

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        if rate < 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be 0 or more, burst and max_keys 1 or more")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Take a token from `key`'s bucket; False when it is empty (refuse the event)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def __len__(self) -> int:
        return len(self._buckets)
