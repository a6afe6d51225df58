"""``RoutineScheduler``: routines' due times become runs, once each, on any number of gateways.

A routine firing is an inbound message on the client-like channel ``routine``, with the
event id ``ROUTINE_ID:DUE`` (the due time in whole seconds) and the routine's owner as
sender, to the routine's session. For each due routine the scheduler

1. submits that message to the router: its receipt, unique per (channel, event id), is
   what makes a second attempt (another gateway's, or this one's after a crash) a
   duplicate that starts nothing;
2. then moves ``next_fire_at`` on by compare-and-set on the due time it fired. A crash
   between the two leaves the routine due at the same time: the retry is a duplicate
   and only advances.

A due time noticed late is *missed* when a later due time has come too, or when it is
older than ``misfire_grace``: with ``catch_up = "once"`` one run starts for the latest
missed due time, with ``"skip"`` none; either way the next due time is the first after
now. The loop sleeps until the soonest due time, at most ``poll_interval`` (so another
gateway's changes are seen), and at once when told of a change (:meth:`wake`).

``[routines.NAME]`` entries of the config are synced into the ledger at start
(:meth:`sync_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from tether.channels import InboundMessage, Sender
from tether.config import RoutinesConfig, RoutineSpec
from tether.errors import ConfigError, Conflict, NotFound
from tether.gateway.router import ConversationRouter, Pending
from tether.ledger import Ledger, RoutineRecord
from tether.schedule import Schedule

__all__ = ["OWNER", "ROUTINE_CHANNEL", "RoutineScheduler", "event_id"]

log = logging.getLogger(__name__)

ROUTINE_CHANNEL = "routine"
OWNER = "admin"
"""Whom a config routine that names no owner runs as: the owner (as the admin token)."""
_BATCH = 100


def event_id(routine_id: str, due_at: float) -> str:
    """The receipt key of a routine's firing at ``due_at``."""
    return f"{routine_id}:{int(due_at)}"


class RoutineScheduler:
    def __init__(
        self,
        ledger: Ledger,
        router: ConversationRouter,
        config: RoutinesConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.router = router
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()
        self._schedules: dict[tuple[str, str], Schedule] = {}

    def schedule(self, cron: str, tz: str) -> Schedule:
        """The schedule of ``cron`` in ``tz`` (:class:`InvalidParams` if either is bad)."""
        key = (cron, tz)
        found = self._schedules.get(key)
        if found is None:
            found = Schedule(cron, tz)
            if len(self._schedules) > 10_000:
                self._schedules.clear()
            self._schedules[key] = found
        return found

    def wake(self) -> None:
        """Look again now (a routine was added or resumed)."""
        self._wake.set()

    # ---- the loop ------------------------------------------------------------------

    async def loop(self) -> None:
        """Fire due routines until cancelled (supervised)."""
        poll = self.config.poll_interval
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the ledger failing for a while: look again soon
                log.exception("! firing routines failed; retrying")
            wait = poll
            with contextlib.suppress(Exception):
                due = await self.ledger.routines.next_due()
                if due is not None:
                    wait = min(poll, max(0.0, due - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait + 0.005)

    async def tick(self) -> int:
        """Fire every routine due now; how many were looked at."""
        now = self.clock()
        due = await self.ledger.routines.due(now, limit=_BATCH)
        for routine in due:
            try:
                await self.fire(routine, now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "! firing a routine failed; it stays due",
                    extra={"routine": routine.id, "routine_name": routine.name},
                )
        return len(due)

    async def fire(self, routine: RoutineRecord, now: float) -> bool:
        """Handle one due routine; False if another gateway (or a change) moved it first."""
        assert routine.next_fire_at is not None
        due = routine.next_fire_at
        schedule = self.schedule(routine.cron, routine.tz)
        latest = max(due, schedule.latest_at_or_before(now))
        missed = latest > due or now - due > self.config.misfire_grace
        fire_at: float | None = due
        if missed:
            fire_at = latest if routine.catch_up == "once" else None
            log.info(
                "routine missed its due time",
                extra={
                    "routine": routine.id,
                    "routine_name": routine.name,
                    "due_at": due,
                    "catch_up": routine.catch_up,
                },
            )
        run_id: str | None = None
        if fire_at is not None:
            run_id = await self._submit(routine, fire_at)
        return await self.ledger.routines.advance(
            routine.id,
            expect=due,
            next_fire_at=schedule.next_after(now),
            fired_at=fire_at,
            run_id=run_id,
        )

    async def _submit(self, routine: RoutineRecord, fire_at: float) -> str | None:
        message = InboundMessage(
            channel=ROUTINE_CHANNEL,
            event_id=event_id(routine.id, fire_at),
            chat_id=routine.id,
            sender=Sender(id=routine.owner),
            text=routine.input,
            addressed=True,
        )
        turn, _ = await self.router.submit(Pending(message=message, session_id=routine.session_id))
        if turn is None:  # fired before (by another gateway, or before a crash)
            with contextlib.suppress(NotFound):
                receipt = await self.ledger.conversations.get_receipt(
                    ROUTINE_CHANNEL, message.event_id
                )
                return receipt.run_id
            return None
        extra = {
            "routine": routine.id,
            "routine_name": routine.name,
            "session_id": routine.session_id,
            "disposition": turn.disposition,
        }
        if turn.run_id is not None and turn.disposition in ("started", "queued"):
            log.info("routine fired", extra={**extra, "run_id": turn.run_id})
        else:
            log.warning("! routine fired but started no run", extra=extra)
        return turn.run_id

    # ---- the config ----------------------------------------------------------------

    async def sync_config(self) -> None:
        """Make the ledger's config routines those of ``[routines.NAME]``: add new ones,
        change changed ones (a new schedule is due from now; an unchanged one keeps its
        due time, so what it missed is caught up), remove those no longer configured.
        :class:`ConfigError` when an entry names a user or session that does not fit."""
        now = self.clock()
        existing = {r.name: r for r in await self.ledger.routines.list(limit=100_000)}
        for name, spec in self.config.entries.items():
            definition = await self._definition(name, spec)
            schedule = self.schedule(str(definition["cron"]), str(definition["tz"]))
            current = existing.get(name)
            if current is None:
                try:
                    await self.ledger.routines.add(
                        name=name,
                        next_fire_at=schedule.next_after(now),
                        source="config",
                        now=now,
                        **definition,
                    )
                except Conflict:  # another gateway synced it first
                    continue
                log.info("routine added from the config", extra={"routine_name": name})
                continue
            if current.source != "config":
                raise ConfigError(
                    f"[routines.{name}]: a routine called {name!r} was added with "
                    "`tether routines add`; remove it or name this one differently"
                )
            if all(getattr(current, k) == v for k, v in definition.items()):
                continue
            timing = (current.cron, current.tz) != (definition["cron"], definition["tz"])
            next_fire_at = current.next_fire_at
            if timing and current.state == "active":
                next_fire_at = schedule.next_after(now)
            await self.ledger.routines.redefine(
                current.id, next_fire_at=next_fire_at, now=now, **definition
            )
            log.info("routine changed in the config", extra={"routine_name": name})
        for name, current in existing.items():
            if current.source == "config" and name not in self.config.entries:
                await self.ledger.routines.remove(current.id)
                log.info("routine removed from the config", extra={"routine_name": name})

    async def _definition(self, name: str, spec: RoutineSpec) -> dict[str, str]:
        where = f"[routines.{name}]"
        owner = OWNER
        try:
            session = await self.ledger.sessions.get(spec.session)
        except NotFound:
            raise ConfigError(f"{where}: no session {spec.session!r}") from None
        if spec.owner is not None:
            try:
                user = await self.ledger.users.find(spec.owner)
            except NotFound:
                raise ConfigError(f"{where}: no user {spec.owner!r} (owner)") from None
            if user.status != "active":
                raise ConfigError(f"{where}: user {spec.owner!r} is revoked")
            if user.role != "owner" and session.created_by != user.id:
                raise ConfigError(
                    f"{where}: session {spec.session} is not {spec.owner}'s: a member's "
                    "routine runs only in a session of theirs"
                )
            owner = user.id
        tz = spec.tz or self.config.timezone
        return {
            "owner": owner,
            "session_id": session.id,
            "cron": self.schedule(spec.cron, tz).cron,
            "tz": tz,
            "input": spec.input,
            "catch_up": spec.catch_up or self.config.catch_up,
        }
