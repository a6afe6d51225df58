"""Token buckets: a per-source limit and a total one, answered with how long to wait.

Pure and clock-injected, so tests drive time. :class:`KeyedLimiter` keeps at most
``max_keys`` sources (the least recently seen are forgotten first); a flood from many
addresses is still bounded by the total bucket.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

__all__ = ["KeyedLimiter", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait(self) -> float:
        """Seconds until a token is available (0: one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> float:
        """Take a token: 0.0 when taken, else the seconds to wait (nothing taken)."""
        delay = self.wait()
        if delay == 0.0:
            self._tokens -= 1
        return delay


class KeyedLimiter:
    """One bucket per key (e.g. the peer address) plus one for everybody."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        total_rate: float,
        total_burst: int,
        max_keys: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self._clock = clock
        self._total = TokenBucket(total_rate, total_burst, clock)
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def take(self, key: str) -> tuple[str, float] | None:
        """None when allowed; else (``source`` or ``total``, seconds to wait)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        delay = bucket.wait()
        if delay:
            return "source", delay
        delay = self._total.take()
        if delay:
            return "total", delay
        bucket.take()
        return None
