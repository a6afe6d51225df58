"""Recording a run's events: the one path for an event, optionally with a state change.

:meth:`RunLog.record` turns a catalogue event (:mod:`tether.protocol.events`) into its
stored form (payload JSON with secrets redacted), commits it at the given seq under the
run's lease epoch (fenced: a gateway that lost the lease gets :class:`Conflict`), applies
a state transition in the same transaction when one is asked for, and publishes the
committed event to the fan-out. ``RunTask.emit``, its transitions and the orchestrator's
ending of runs it does not drive all go through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from tether.errors import InternalError
from tether.gateway.fanout import Fanout
from tether.ledger import STATE_EVENTS, Event, Ledger, NewEvent, Run
from tether.protocol.events import RunEvent, payload_data
from tether.security.redaction import redact_value
from tether.types import RunState

__all__ = ["RunLog", "encode_event"]

_encode = msgspec.json.Encoder().encode


def encode_event(
    event: RunEvent, seq: int, created_at: float, origin: int | None = None
) -> NewEvent:
    """The stored form of ``event`` at ``seq``: its kind and source from the catalogue, and
    its payload as JSON with secrets redacted (nothing secret reaches the ledger)."""
    payload = _encode(redact_value(payload_data(event))).decode()
    return NewEvent(
        seq=seq,
        kind=event.KIND,
        source=event.SOURCE,
        payload=payload,
        created_at=created_at,
        origin=origin,
    )


@dataclass
class RunLog:
    """Commits and publishes run events. See the module docstring."""

    ledger: Ledger
    fanout: Fanout
    clock: Callable[[], float] = field(default=time.time)

    async def next_seq(self, run_id: str) -> int:
        return await self.ledger.events.last_seq(run_id) + 1

    async def record(
        self,
        run: Run,
        event: RunEvent,
        *,
        seq: int | None = None,
        to: RunState | None = None,
        reason: str | None = None,
        output: str | None = None,
        origin: int | None = None,
    ) -> tuple[Event, Run]:
        """Commit ``event`` (at ``seq``, else after the last one) under ``run.epoch``, with
        the transition to ``to`` if given; publish it; return it and the run as now stored."""
        if to is not None:
            expected = STATE_EVENTS.get(to)
            if expected is None or not isinstance(event, expected):
                wanted = expected.KIND if expected is not None else "no event"
                raise InternalError(
                    f"a move to {to.value} is recorded as {wanted}, not {event.KIND}"
                )
        if seq is None:
            seq = await self.next_seq(run.id)
        new = encode_event(event, seq, self.clock(), origin)
        if to is None:
            (new,) = await self.ledger.events.append(run.id, run.epoch, [new])
        else:
            new = await self.ledger.events.offload(run.id, new)  # large payloads as artifacts
            run = await self.ledger.runs.transition(
                run.id, epoch=run.epoch, to=to, reason=reason, output=output, event=new
            )
        stored = new.committed(run.id, run.epoch)
        self.fanout.publish(run.session_id, stored)
        return stored, run

    async def record_many(
        self, run: Run, events: Sequence[tuple[RunEvent, int | None]], *, seq: int
    ) -> list[Event]:
        """Commit ``events`` (each with its ``origin``) at ``seq``, ``seq + 1``, … in one
        commit, under ``run.epoch``; publish them in order."""
        now = self.clock()
        news = [encode_event(e, seq + i, now, origin) for i, (e, origin) in enumerate(events)]
        stored = [
            n.committed(run.id, run.epoch)
            for n in await self.ledger.events.append(run.id, run.epoch, news)
        ]
        for event in stored:
            self.fanout.publish(run.session_id, event)
        return stored
