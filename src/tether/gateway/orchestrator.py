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
from collections.abc import Mapping
from typing import Any

from tether.agents.contract import AgentBackend
from tether.config import RunsConfig
from tether.errors import Conflict, Forbidden, InvalidParams, NotFound
from tether.gateway.call_gate import CallGate
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.run_log import RunLog, encode_event
from tether.gateway.run_task import RunEnv, RunTask
from tether.gateway.supervisor import Supervisor
from tether.ledger import TERMINAL, Ledger, Run, Session
from tether.protocol.events import (
    RunCancelled,
    RunEvent,
    RunExpired,
    RunFailed,
    RunQueued,
    SteeringDropped,
    SteeringReceived,
)
from tether.security.redaction import redact
from tether.types import RunState, SessionMode, new_id

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
        run_log: RunLog,
        backends: Mapping[str, AgentBackend],
        gate: CallGate,
        config: RunsConfig,
        metrics: GatewayMetrics,
        supervisor: Supervisor,
        *,
        node: str,
        tool_timeout: float = 60.0,
    ) -> None:
        self.run_log = run_log
        self.ledger: Ledger = run_log.ledger
        self.backends = dict(backends)
        self.config = config
        self.metrics = metrics
        self.supervisor = supervisor
        self.node = node
        self.owner = f"{node}:{new_id('inc')}"
        self.gate = gate
        self.env = RunEnv(
            log=run_log,
            tools=gate.tools,
            gate=gate,
            config=config,
            owner=self.owner,
            tool_timeout=tool_timeout,
            on_lease_lost=metrics.leases_lost.inc,
            requeue=self._requeue,
        )
        self.tasks: dict[str, RunTask] = {}
        self._raw_inputs: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Inputs that redaction changed, as submitted, until their run starts here (the
        ledger stores them redacted; the agent of a run this gateway accepted gets what
        the user typed). Bounded: the oldest are forgotten first."""
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[Any]] = []

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a previous incarnation left, then start the supervised loops."""
        await self.reap()
        self._loops = [
            self.supervisor.spawn("orchestrator:claim", self._claim_loop()),
            self.supervisor.spawn("orchestrator:reap", self._reap_loop()),
        ]

    async def aclose(self) -> None:
        """Stop claiming; stop every run without ending it and release its lease."""
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
        await self.gate.requests.ledger.requests.expire_due()
        cutoff = time.time() - self.config.queue_ttl
        for run in await self.ledger.runs.expired_queued(cutoff):
            await self._end_unowned(
                run,
                RunState.EXPIRED,
                RunExpired(reason="queue_ttl", message="waited in the queue too long"),
                "queue_ttl",
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
        """End a run this gateway holds but does not drive (dead letter, no agent…)."""
        await self._end(run, RunState.FAILED, RunFailed(reason=reason, message=message), reason)

    async def _end_unowned(
        self, run: Run, to: RunState, event: RunEvent, reason: str
    ) -> Run | None:
        """End a queued run (no owner): CAS on its current epoch."""
        ended = await self._end(run, to, event, reason)
        self.wake()
        return ended

    async def _end(self, run: Run, to: RunState, event: RunEvent, reason: str) -> Run | None:
        try:
            ended: Run = (await self.run_log.record(run, event, to=to, reason=reason))[1]
        except Conflict:
            return None
        self.metrics.runs_finished.labels(to.value, reason).inc()
        await self._close_requests(run.id, f"run.{to.value}")
        return ended

    async def _close_requests(self, run_id: str, by: str) -> None:
        """An ended run's open requests are closed (nothing will act on them)."""
        try:
            await self.gate.requests.close_run(run_id, by)
        except Exception:
            log.exception("closing the requests of an ended run failed", extra={"run_id": run_id})

    async def _launch(self, run: Run, *, resumed: bool) -> None:
        backend = self.backends.get(run.agent)
        if backend is None:
            await self._end_owned(run, "unknown_agent", f"agent {run.agent!r} is not available")
            return
        raw = self._raw_inputs.pop(run.id, None)
        task = RunTask(self.env, run, backend, resumed=resumed, raw_input=raw)
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
                await self._close_requests(task.run_id, f"run.{task.record.state.value}")
            self.wake()

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
        user_role: str | None = None,
        trusted: bool = False,
        receipt: tuple[str, str] | None = None,
        session: Session | None = None,
        ahead: bool | None = None,
    ) -> tuple[Run, str]:
        """Create a run (or steer the active one); returns the run and the disposition.
        ``created_by``, ``role`` and ``user_role`` are the caller's principal, connection
        role and user role;
        ``trusted`` is input the gateway already accepted from them (requeued steering);
        ``receipt``: the inbound message's (channel, event id), marked done with the run;
        ``session`` and ``ahead`` (whether runs are queued or active in it): what the
        caller just read, so they are not read again."""
        if session is not None:
            name = agent or session.agent
            self.check_agent(name, created_by, role, user_role, trusted=trusted)
        elif session_id is None:
            name = agent or self.config.default_agent
            self.check_agent(name, created_by, role, user_role, trusted=trusted)
            session = await self.new_session(created_by, agent=name)
        else:
            session = await self.ledger.sessions.get(session_id)
            name = agent or session.agent
            self.check_agent(name, created_by, role, user_role, trusted=trusted)
        if steer:
            active = next((t for t in self.tasks.values() if t.session_id == session.id), None)
            # a run whose agent is done (its end is being recorded) would never read it:
            # the input becomes the session's next run instead
            if active is not None and active.takes_steering:
                accepted = active.steer(text, created_by)
                event: RunEvent = (
                    SteeringReceived(text=text, sender=created_by)
                    if accepted
                    else SteeringDropped(text=text, reason="queue_full", sender=created_by)
                )
                await active.record_event(event)
                return active.record, "steered" if accepted else "dropped"
        if ahead is None:
            found, _ = await self.ledger.runs.list(
                session_id=session.id, states=["queued", "running", "waiting"], limit=1
            )
            ahead = bool(found)
        stored = redact(text)
        queued = encode_event(RunQueued(input=stored, agent=name), 1, self.run_log.clock())
        run_id = new_id("run")
        if stored != text:  # before the run exists: the claim loop may start it at once
            self._raw_inputs[run_id] = text
            while len(self._raw_inputs) > _RAW_INPUTS:
                self._raw_inputs.popitem(last=False)
        disposition = "queued" if ahead else "started"
        try:
            run = await self.ledger.runs.create(
                session_id=session.id,
                agent=name,
                input=stored,
                created_by=created_by,
                event=queued,
                run_id=run_id,
                receipt=receipt,
                detail=disposition,
            )
        except BaseException:
            self._raw_inputs.pop(run_id, None)
            raise
        self.run_log.fanout.publish(run.session_id, queued.committed(run.id, run.epoch))
        self.metrics.runs_created.inc()
        self.wake()
        return run, disposition

    async def _requeue(self, session_id: str, text: str, sender: str | None) -> str:
        run, _ = await self.submit(
            session_id=session_id,
            agent=None,
            text=text,
            created_by=sender,
            steer=False,
            trusted=True,
        )
        return run.id

    async def new_session(
        self,
        created_by: str | None,
        *,
        agent: str | None = None,
        runner: str | None = None,
        workspace: str | None = None,
        mode: SessionMode | None = None,
        conversation_id: str | None = None,
    ) -> Session:
        """A session with these settings, each else the configured default (runner,
        workspace, mode, and the default agent)."""
        config = self.config
        runner_id = None
        runner = runner or config.default_runner
        if runner:
            try:
                runner_id = (await self.ledger.runners.find(runner)).id
            except NotFound:
                log.warning(
                    "! the new session's runner (runs.default_runner or the conversation's) names no runner; the session has none",
                    extra={"runner": runner},
                )
        return await self.ledger.sessions.create(
            agent=agent or config.default_agent,
            runner_id=runner_id,
            workspace=workspace or config.default_workspace,
            mode=mode or config.default_mode,
            created_by=created_by,
            conversation_id=conversation_id,
        )

    def active_task(self, session_id: str) -> RunTask | None:
        """The run of ``session_id`` this gateway drives now, if any."""
        return next((t for t in self.tasks.values() if t.session_id == session_id), None)

    def check_agent(
        self,
        name: str,
        principal: str | None,
        role: str | None,
        user_role: str | None = None,
        *,
        trusted: bool = False,
    ) -> None:
        """Refuse an unknown agent (``invalid_params``) or a fixture the caller may not use
        (unless ``trusted``)."""
        backend = self.backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self.backends)) or "none"
            raise InvalidParams(
                f"unknown agent {name!r} (available: {known})", data={"field": "params.agent"}
            )
        if (
            backend.capabilities.fixture
            and not trusted
            and not (
                (role is not None and role in self.config.fixture_roles)
                or (user_role is not None and user_role in self.config.fixture_roles)
                or (principal is not None and principal in self.config.fixture_principals)
            )
        ):
            raise Forbidden(
                f"the {name!r} agent is a test fixture that can run any tool; only "
                f"{', '.join(self.config.fixture_roles) or 'no'} connections or users may use it "
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
                run,
                RunState.CANCELLED,
                RunCancelled(reason="cancelled", message=reason or None),
                "cancelled",
            )
            if ended is not None:
                return ended
        run = await self.ledger.runs.request_cancel(run_id)
        await self._close_requests(run_id, "run.cancel")
        task = self.tasks.get(run_id)
        if task is not None:
            task.request_stop("cancelled", reason)
        return run
