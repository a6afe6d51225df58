from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tether.protocol.methods import PING
from tether.protocol.pending import PendingCall, PendingCalls


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=200), st.floats(0, 100))
def test_expire_returns_exactly_the_overdue_unanswered_calls(
    calls: list[tuple[float, bool]], now: float
) -> None:
    table: PendingCalls[Any] = PendingCalls()
    answered = set()
    for i, (deadline, done) in enumerate(calls):
        table.add(PendingCall(i, PING, deadline, None))
        if done:
            answered.add(i)
    for i in answered:
        assert table.pop(i) is not None
    expired = {c.id for c in table.expire(now)}
    assert expired == {i for i, (d, _) in enumerate(calls) if d <= now and i not in answered}
    remaining = {c.id for c in table.drain()}
    assert remaining == set(range(len(calls))) - answered - expired


def test_heap_does_not_grow_without_bound() -> None:
    table: PendingCalls[Any] = PendingCalls()
    for i in range(10_000):
        table.add(PendingCall(i, PING, 1e9, None))
        table.pop(i)
    assert len(table._heap) < 2_000
    assert table.next_deadline() is None
