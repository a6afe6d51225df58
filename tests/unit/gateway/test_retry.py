"""The delivery retry policy: pure decisions."""

from __future__ import annotations

from tether.channels import Delivered, Permanent, RetryAfter
from tether.gateway.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, base=1.0, cap=10.0, jitter=0.0)


def test_delivered_is_done_and_permanent_is_never_retried() -> None:
    assert POLICY.decide(1, Delivered(message_id="m"), 0).state == "delivered"
    dead = POLICY.decide(1, Permanent(reason="HTTP 400"), 0)
    assert (dead.state, dead.error) == ("dead", "refused: HTTP 400")


def test_a_hint_is_honoured_else_the_backoff_doubles_up_to_its_cap() -> None:
    hinted = POLICY.decide(1, RetryAfter(seconds=7, reason="429"), 100)
    assert (hinted.state, hinted.retry_at) == ("pending", 107)
    waits = [POLICY.decide(n, RetryAfter(seconds=0, reason="500"), 0).retry_at for n in (1, 2, 3)]
    assert waits == [1.0, 2.0, 4.0]
    assert RetryPolicy(base=1.0, cap=10.0, jitter=0.0).backoff(20) == 10.0
    jittered = RetryPolicy(base=1.0, jitter=0.5).backoff(1, rand=lambda: 1.0)
    assert jittered == 1.5


def test_it_gives_up_after_its_attempts() -> None:
    last = POLICY.decide(4, RetryAfter(seconds=1, reason="HTTP 503"), 0)
    assert (last.state, last.error) == ("dead", "gave up after 4 attempts: HTTP 503")
