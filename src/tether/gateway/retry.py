"""When to try a delivery again: a pure policy returning a decision (the outbox applies it).

A permanent error is never retried. A retryable one waits what the platform asked for
(a rate-limit hint), else an exponential backoff with jitter, capped; after
``max_attempts`` attempts the delivery is given up (dead-lettered), visibly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tether.channels import Delivered, DeliveryResult, Permanent

__all__ = ["RetryDecision", "RetryPolicy"]


@dataclass(frozen=True)
class RetryDecision:
    state: str
    """``delivered``, ``pending`` (try again at ``retry_at``) or ``dead``."""
    retry_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.2
    """Up to this fraction is added to a backoff (not to a platform's hint)."""

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        delay: float = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return delay * (1.0 + self.jitter * rand())

    def decide(
        self,
        attempt: int,
        result: DeliveryResult,
        now: float,
        rand: Callable[[], float] = random.random,
    ) -> RetryDecision:
        """What to do after attempt number ``attempt`` (1 for the first) ended in ``result``."""
        if isinstance(result, Delivered):
            return RetryDecision(state="delivered")
        if isinstance(result, Permanent):
            return RetryDecision(state="dead", error=f"refused: {result.reason}")
        if attempt >= self.max_attempts:
            return RetryDecision(
                state="dead", error=f"gave up after {attempt} attempts: {result.reason}"
            )
        wait = result.seconds if result.seconds > 0 else self.backoff(attempt, rand)
        return RetryDecision(state="pending", retry_at=now + wait, error=result.reason)
