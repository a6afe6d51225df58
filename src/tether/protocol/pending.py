"""Calls sent and not yet answered, with their deadlines held as data.

The I/O shell asks :meth:`PendingCalls.next_deadline` when to wake up and
:meth:`PendingCalls.expire` which calls ran out of time; nothing here sleeps.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tether.protocol.methods import Method

__all__ = ["PendingCall", "PendingCalls"]

W = TypeVar("W")


@dataclass(eq=False, slots=True)
class PendingCall(Generic[W]):
    """A request awaiting its response. ``waiter`` is whatever the shell resolves (a future)."""

    id: int
    method: Method[Any, Any]
    deadline: float
    waiter: W


@dataclass
class PendingCalls(Generic[W]):
    """Pending calls by id, plus a heap of deadlines (stale entries are skipped lazily)."""

    _calls: dict[int, PendingCall[W]] = field(default_factory=dict)
    _heap: list[tuple[float, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: PendingCall[W]) -> None:
        self._calls[call.id] = call
        heapq.heappush(self._heap, (call.deadline, call.id))
        if len(self._heap) > 4 * len(self._calls) + 1024:
            # Most entries belong to answered calls: rebuild instead of letting it grow.
            self._heap = [(c.deadline, c.id) for c in self._calls.values()]
            heapq.heapify(self._heap)

    def pop(self, call_id: int) -> PendingCall[W] | None:
        """Remove and return the call with this id, or None if unknown (late or bogus)."""
        return self._calls.pop(call_id, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] not in self._calls:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[PendingCall[W]]:
        """Remove and return every call whose deadline is at or before ``now``."""
        expired: list[PendingCall[W]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, call_id = heapq.heappop(heap)
            call = self._calls.pop(call_id, None)
            if call is not None:
                expired.append(call)
        return expired

    def drain(self) -> list[PendingCall[W]]:
        """Remove and return every pending call (the connection is closing)."""
        calls = list(self._calls.values())
        self._calls.clear()
        self._heap.clear()
        return calls
