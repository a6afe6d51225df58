"""The orchestrator: claims queued runs, drives them, recovers them after a restart.

Owner identity is ``<node>:<incarnation>``. At start, and then every ``reap_interval``,
it reclaims active runs whose lease expired or whose owner is a dead incarnation of
this node (so a restarted gateway recovers its runs at once rather than after the
lease). A reclaimed run resumes when its backend declares ``resume``; otherwise it ends
``failed``/``interrupted`` with an event the channels turn into a message. A run
reclaimed more than ``max_attempts`` times ends ``failed``/``dead_letter``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from tether.agents.contract import AgentBackend
from tether.config import RunsConfig
from tether.errors import Conflict, Forbidden, InvalidParams
from tether.gateway.fanout import Fanout
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.run_task import RunTask, encode_payload
from tether.gateway.tools import ToolDispatcher
from tether.ledger import TERMINAL, Ledger, NewEvent, Run, RunState
from tether.security.redaction import redact
from tether.types import new_id

__all__ = ["Orchestrator", "default_node_id"]

log = logging.getLogger(__name__)

_RAW_INPUTS = 1024


def default_node_id(data_dir: str) -> str:
    """Host name plus a short hash of the data dir: stable across restarts of one gateway."""
    digest = hashlib.sha256(data_dir.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Orchestrator:
    """Runs the claim and reap loops and owns every active :class:`RunTask`."""

    def __init__(
        self,
        ledger: Ledger,
        backends: Mapping[str, AgentBackend],
        fanout: Fanout,
        config: RunsConfig,
        metrics: GatewayMetrics,
        *,
        node: str,
        on_fatal: Callable[[BaseException], None] | None = None,
        tools: ToolDispatcher | None = None,
    ) -> None:
        self.ledger = ledger
        self.backends = dict(backends)
        self.fanout = fanout
        self.config = config
        self.metrics = metrics
        self.node = node
        self.owner = f"{node}:{new_id('inc')}"
        self.on_fatal = on_fatal
        self.tools = tools
        self.tool_timeout = 60.0
        self.tasks: dict[str, RunTask] = {}
        self._raw_inputs: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Inputs that redaction changed, as submitted, until their run starts here (the
        ledger stores them redacted; the agent of a run this gateway accepted gets what
        the user typed). Bounded: the oldest are forgotten first."""
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.reap()
        for name, loop in (("claim", self._claim_loop), ("reap", self._reap_loop)):
            task = asyncio.get_running_loop().create_task(loop(), name=f"orchestrator:{name}")
            task.add_done_callback(self._loop_ended)
            self._loops.append(task)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        log.critical("orchestrator loop %s died", task.get_name(), exc_info=exc)
        if self.on_fatal is not None and exc is not None:
            self.on_fatal(exc)

    async def aclose(self) -> None:
        """Stop claiming; stop every run without ending it and release its lease."""
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        tasks = list(self.tasks.values())
        for task in tasks:
            task.request_stop("shutdown")
        pending = [t.task for t in tasks if t.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.config.cancel_grace + 5)

    def wake(self) -> None:
        self._wake.set()

    # ---- the loops -----------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                while len(self.tasks) < self.config.max_active:
                    run = await self.ledger.runs.claim_next(self.owner, self.config.lease_seconds)
                    if run is None:
                        break
                    await self._launch(run, resumed=False)
            except Exception:
                log.exception("claiming runs failed; retrying")
                await asyncio.sleep(self.config.poll_interval)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("reaping runs failed; retrying")

    async def reap(self) -> None:
        """Recover stale active runs and expire runs queued for too long."""
        prefix = f"{self.node}:"
        for run in await self.ledger.runs.reclaimable(dead_owners=prefix, exclude_owner=self.owner):
            if run.id in self.tasks:
                continue
            if len(self.tasks) >= self.config.max_active and self._would_resume(run):
                continue  # it stays reclaimable; a later pass takes it when a slot is free
            taken = await self.ledger.runs.reclaim(
                run.id,
                epoch=run.epoch,
                owner=self.owner,
                lease_seconds=self.config.lease_seconds,
                dead_owners=prefix,
            )
            if taken is not None:
                await self._recover(taken)
        cutoff = time.time() - self.config.queue_ttl
        for run in await self.ledger.runs.expired_queued(cutoff):
            await self._end_unowned(
                run, RunState.EXPIRED, "run.expired", "queue_ttl", "waited in the queue too long"
            )

    def _would_resume(self, run: Run) -> bool:
        """Whether reclaiming ``run`` (attempt + 1) would start it again, taking a slot."""
        backend = self.backends.get(run.agent)
        return (
            backend is not None
            and backend.capabilities.resume
            and run.attempts + 1 <= self.config.max_attempts
        )

    async def _recover(self, run: Run) -> None:
        backend = self.backends.get(run.agent)
        if run.attempts > self.config.max_attempts:
            await self._end_owned(run, "dead_letter", f"gave up after {run.attempts - 1} attempts")
        elif backend is None:
            await self._end_owned(run, "unknown_agent", f"agent {run.agent!r} is not available")
        elif backend.capabilities.resume:
            log.info("resuming run", extra={"run_id": run.id, "attempt": run.attempts})
            await self._launch(run, resumed=True)
        else:
            await self._end_owned(
                run, "interrupted", "the gateway restarted while this run was active"
            )

    async def _end_owned(self, run: Run, reason: str, message: str) -> None:
        seq = await self.ledger.events.last_seq(run.id) + 1
        payload = encode_payload({"reason": reason, "message": message})
        event = NewEvent(
            seq=seq, kind="run.failed", source="gateway", payload=payload, created_at=time.time()
        )
        try:
            await self.ledger.runs.transition(
                run.id, epoch=run.epoch, to=RunState.FAILED, reason=reason, event=event
            )
        except Conflict:
            return
        self.metrics.runs_finished.labels("failed", reason).inc()
        self._publish(run, event)

    async def _end_unowned(
        self, run: Run, to: RunState, kind: str, reason: str, message: str
    ) -> Run | None:
        """End a queued run (no owner): CAS on its current epoch."""
        seq = await self.ledger.events.last_seq(run.id) + 1
        payload = encode_payload({"reason": reason, "message": message})
        event = NewEvent(
            seq=seq, kind=kind, source="gateway", payload=payload, created_at=time.time()
        )
        try:
            ended = await self.ledger.runs.transition(
                run.id, epoch=run.epoch, to=to, reason=reason, event=event
            )
        except Conflict:
            return None
        self.metrics.runs_finished.labels(to.value, reason).inc()
        self._publish(run, event)
        self.wake()
        return ended

    def _publish(self, run: Run, event: NewEvent) -> None:
        self.fanout.publish(run.session_id, event.committed(run.id, run.epoch))

    async def _launch(self, run: Run, *, resumed: bool) -> None:
        backend = self.backends.get(run.agent)
        if backend is None:
            await self._end_owned(run, "unknown_agent", f"agent {run.agent!r} is not available")
            return
        raw = self._raw_inputs.pop(run.id, None)
        task = RunTask(self, run, backend, resumed=resumed, raw_input=raw)
        self.tasks[run.id] = task  # before any await: steering finds a run it holds
        self.metrics.runs_active.set(len(self.tasks))
        task.task = asyncio.get_running_loop().create_task(
            self._supervise(task), name=f"run:{run.id}"
        )

    async def _supervise(self, task: RunTask) -> None:
        try:
            await task.main()
        finally:
            self.tasks.pop(task.run_id, None)
            self.metrics.runs_active.set(len(self.tasks))
            if task.record.state in TERMINAL:
                self.metrics.runs_finished.labels(
                    task.record.state.value, task.record.reason or ""
                ).inc()
            self.wake()

    def metrics_lease_lost(self) -> None:
        self.metrics.leases_lost.inc()

    # ---- requests ------------------------------------------------------------------

    async def submit(
        self,
        *,
        session_id: str | None,
        agent: str | None,
        text: str,
        created_by: str | None,
        steer: bool,
        role: str | None = None,
    ) -> tuple[Run, str]:
        """Create a run (or steer the active one); returns the run and the disposition.
        ``created_by`` and ``role`` are the caller's principal and connection role."""
        if session_id is None:
            name = agent or self.config.default_agent
            self._check_agent(name, created_by, role)
            session = await self.ledger.sessions.create(agent=name, created_by=created_by)
        else:
            session = await self.ledger.sessions.get(session_id)
        name = agent or session.agent
        self._check_agent(name, created_by, role)
        if steer:
            active = next((t for t in self.tasks.values() if t.session_id == session.id), None)
            if (
                active is not None
                and active.backend.capabilities.steering
                and active.stop_reason is None
            ):
                accepted = active.steer(text)
                kind = "steering.received" if accepted else "steering.dropped"
                payload: dict[str, Any] = {"text": text}
                if not accepted:
                    payload["reason"] = "queue_full"
                await active.emit(kind, payload, source="gateway")
                return active.record, "steered" if accepted else "dropped"
        ahead, _ = await self.ledger.runs.list(
            session_id=session.id, states=["queued", "running", "waiting"], limit=1
        )
        stored = redact(text)
        payload_json = encode_payload({"input": stored, "agent": name})
        event = NewEvent(
            seq=1, kind="run.queued", source="gateway", payload=payload_json, created_at=time.time()
        )
        run_id = new_id("run")
        if stored != text:  # before the run exists: the claim loop may start it at once
            self._raw_inputs[run_id] = text
            while len(self._raw_inputs) > _RAW_INPUTS:
                self._raw_inputs.popitem(last=False)
        try:
            run = await self.ledger.runs.create(
                session_id=session.id,
                agent=name,
                input=stored,
                created_by=created_by,
                event=event,
                run_id=run_id,
            )
        except BaseException:
            self._raw_inputs.pop(run_id, None)
            raise
        self._publish(run, event)
        self.metrics.runs_created.inc()
        self.wake()
        return run, ("queued" if ahead else "started")

    def _check_agent(self, name: str, principal: str | None, role: str | None) -> None:
        backend = self.backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self.backends)) or "none"
            raise InvalidParams(
                f"unknown agent {name!r} (available: {known})", data={"field": "params.agent"}
            )
        if backend.capabilities.fixture and not (
            (role is not None and role in self.config.fixture_roles)
            or (principal is not None and principal in self.config.fixture_principals)
        ):
            raise Forbidden(
                f"the {name!r} agent is a test fixture that can run any tool; only "
                f"{', '.join(self.config.fixture_roles) or 'no'} connections may use it "
                "(see [runs] fixture_roles and fixture_principals)",
                data={"agent": name},
            )

    async def cancel(self, run_id: str, reason: str = "") -> Run:
        """Cancel: a queued run ends now; an active one is stopped by its owner."""
        run = await self.ledger.runs.get(run_id)
        if run.state in TERMINAL:
            return run
        if run.state == RunState.QUEUED:
            ended = await self._end_unowned(
                run, RunState.CANCELLED, "run.cancelled", "cancelled", reason
            )
            if ended is not None:
                return ended
        run = await self.ledger.runs.request_cancel(run_id)
        task = self.tasks.get(run_id)
        if task is not None:
            task.request_stop("cancelled", reason)
        return run
