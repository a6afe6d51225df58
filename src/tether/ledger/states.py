"""The run state machine: one table of legal transitions.

    queued -> running <-> waiting;  running | waiting -> succeeded | failed | cancelled | expired

A queued run may also be cancelled, expired or failed (dead letter) without running.
Terminal states are final. Every write of a state is a compare-and-set on (state, lease
epoch) in :mod:`tether.ledger.store`; this module only says what is legal, and, in
:data:`STATE_EVENTS`, which event of the catalogue records each move.
"""

from __future__ import annotations

from typing import Final

from tether.errors import Conflict
from tether.protocol.events import (
    RunCancelled,
    RunEvent,
    RunExpired,
    RunFailed,
    RunRunning,
    RunSucceeded,
    RunWaiting,
)
from tether.types import RunState

__all__ = ["ACTIVE", "STATE_EVENTS", "TERMINAL", "TRANSITIONS", "check_transition"]


S = RunState
TRANSITIONS: Final[dict[RunState, frozenset[RunState]]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.RUNNING: frozenset({S.WAITING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.WAITING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL: Final = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE: Final = frozenset({S.RUNNING, S.WAITING})

STATE_EVENTS: Final[dict[RunState, type[RunEvent]]] = {
    S.WAITING: RunWaiting,
    S.RUNNING: RunRunning,
    S.SUCCEEDED: RunSucceeded,
    S.FAILED: RunFailed,
    S.CANCELLED: RunCancelled,
    S.EXPIRED: RunExpired,
}
"""The event that records a move into each state. ``run.running`` is the way back from
``waiting``; a claimed run enters ``running`` from ``queued`` and records
``run.started`` (or ``run.recovered``) itself once it holds the lease."""


def check_transition(current: RunState, new: RunState) -> None:
    """Raise :class:`Conflict` unless ``current -> new`` is in the table."""
    if new not in TRANSITIONS[current]:
        final = " (terminal states are final)" if current in TERMINAL else ""
        raise Conflict(
            f"illegal run transition {current.value} -> {new.value}{final}",
            data={"from": current.value, "to": new.value},
        )
