"""The run state machine: one table of legal transitions.

    queued -> running <-> waiting -> succeeded | failed | cancelled | expired

A queued run may also be cancelled, expired or failed (dead letter) without running.
Terminal states are final. Every write of a state is a compare-and-set on (state, lease
epoch) in :mod:`tether.ledger.store`; this module only says what is legal.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from tether.errors import Conflict

__all__ = ["ACTIVE", "TERMINAL", "TRANSITIONS", "RunState", "check_transition"]


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = RunState
TRANSITIONS: Final[dict[RunState, frozenset[RunState]]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.RUNNING: frozenset({S.WAITING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.WAITING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL: Final = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE: Final = frozenset({S.RUNNING, S.WAITING})


def check_transition(current: RunState, new: RunState) -> None:
    """Raise :class:`Conflict` unless ``current -> new`` is in the table."""
    if new not in TRANSITIONS[current]:
        final = " (terminal states are final)" if current in TERMINAL else ""
        raise Conflict(
            f"illegal run transition {current.value} -> {new.value}{final}",
            data={"from": current.value, "to": new.value},
        )
