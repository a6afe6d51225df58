"""Handlers of ``routine.add|list|pause|resume|remove``.

Who may do what: a member adds routines in sessions they may use (their own), which run
as them, and lists, pauses, resumes and removes only their own (another's is
``not_found``); an owner all of them; a viewer none (the method table says so).
"""

from __future__ import annotations

import contextlib
import logging
import time

from tether.config import RoutinesConfig, check_routine_input
from tether.errors import Conflict, InvalidParams, NotFound
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.routines import RoutineScheduler
from tether.gateway.runs_api import RunsApi
from tether.ledger import Ledger, RoutineRecord
from tether.protocol import methods as m
from tether.protocol.routines import (
    RoutineAddParams,
    RoutineInfo,
    RoutineList,
    RoutineListParams,
    RoutineRef,
)

__all__ = ["RoutinesApi", "routine_info"]

log = logging.getLogger(__name__)


def routine_info(r: RoutineRecord, owner_name: str) -> RoutineInfo:
    return RoutineInfo(
        id=r.id,
        name=r.name,
        owner=r.owner,
        owner_name=owner_name,
        session_id=r.session_id,
        cron=r.cron,
        tz=r.tz,
        input=r.input,
        state="paused" if r.state == "paused" else "active",
        catch_up="skip" if r.catch_up == "skip" else "once",
        next_fire_at=r.next_fire_at,
        last_fired_at=r.last_fired_at,
        last_run_id=r.last_run_id,
        source="config" if r.source == "config" else "cli",
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


class RoutinesApi:
    def __init__(
        self,
        ledger: Ledger,
        runs: RunsApi,
        scheduler: RoutineScheduler,
        config: RoutinesConfig,
    ) -> None:
        self.ledger = ledger
        self.runs = runs
        self.scheduler = scheduler
        self.config = config

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.ROUTINE_ADD, self.add)
        handlers.add(m.ROUTINE_LIST, self.list)
        handlers.add(m.ROUTINE_PAUSE, self.pause)
        handlers.add(m.ROUTINE_RESUME, self.resume)
        handlers.add(m.ROUTINE_REMOVE, self.remove)

    async def _owner_name(self, owner: str, names: dict[str, str] | None = None) -> str:
        if names is not None and owner in names:
            return names[owner]
        name = owner
        if owner.startswith("usr_"):
            with contextlib.suppress(NotFound):
                name = (await self.ledger.users.get(owner)).name
        if names is not None:
            names[owner] = name
        return name

    async def _info(self, r: RoutineRecord) -> RoutineInfo:
        return routine_info(r, await self._owner_name(r.owner))

    async def _mine(self, peer: Peer, ref: str) -> RoutineRecord:
        """The routine, if ``peer`` may manage it; else ``not_found``."""
        try:
            routine = await self.ledger.routines.find(ref)
        except NotFound:
            routine = None
        if routine is None or not (peer.is_owner or routine.owner == peer.principal.id):
            raise NotFound(f"no routine {ref!r}", data={"routine": ref})
        return routine

    # ---- handlers --------------------------------------------------------------------

    async def add(self, peer: Peer, p: RoutineAddParams) -> RoutineInfo:
        session = await self.runs.session_for(peer, p.session_id)
        tz = p.tz or self.config.timezone
        schedule = self.scheduler.schedule(p.cron, tz)
        try:
            text = check_routine_input(p.input)
        except ValueError as exc:
            raise InvalidParams(str(exc), data={"field": "input"}) from None
        record = await self.ledger.routines.add(
            name=p.name,
            owner=peer.principal.id,
            session_id=session.id,
            cron=schedule.cron,
            tz=tz,
            input=text,
            catch_up=p.catch_up or self.config.catch_up,
            next_fire_at=schedule.next_after(time.time()),
        )
        log.info(
            "routine added",
            extra={"routine": record.id, "routine_name": record.name, "session_id": session.id},
        )
        self.scheduler.wake()
        return await self._info(record)

    async def list(self, peer: Peer, p: RoutineListParams) -> RoutineList:
        if p.session_id is not None:
            await self.runs.session_for(peer, p.session_id)
        owner = None if peer.is_owner else peer.principal.id
        found = await self.ledger.routines.list(owner=owner, session_id=p.session_id)
        names: dict[str, str] = {}
        return RoutineList(
            routines=[routine_info(r, await self._owner_name(r.owner, names)) for r in found]
        )

    async def pause(self, peer: Peer, p: RoutineRef) -> RoutineInfo:
        routine = await self._mine(peer, p.routine)
        if routine.state == "paused":
            return await self._info(routine)
        record = await self.ledger.routines.set_state(routine.id, "paused", next_fire_at=None)
        log.info("routine paused", extra={"routine": routine.id, "routine_name": routine.name})
        return await self._info(record)

    async def resume(self, peer: Peer, p: RoutineRef) -> RoutineInfo:
        routine = await self._mine(peer, p.routine)
        if routine.state == "active":
            return await self._info(routine)
        schedule = self.scheduler.schedule(routine.cron, routine.tz)
        record = await self.ledger.routines.set_state(
            routine.id, "active", next_fire_at=schedule.next_after(time.time())
        )
        log.info("routine resumed", extra={"routine": routine.id, "routine_name": routine.name})
        self.scheduler.wake()
        return await self._info(record)

    async def remove(self, peer: Peer, p: RoutineRef) -> RoutineInfo:
        routine = await self._mine(peer, p.routine)
        if routine.source == "config":
            raise Conflict(
                f"routine {routine.name!r} is defined in the config: remove "
                f"[routines.{routine.name}] there (or pause it)",
                data={"routine": routine.id},
            )
        await self.ledger.routines.remove(routine.id)
        log.info("routine removed", extra={"routine": routine.id, "routine_name": routine.name})
        return await self._info(routine)
