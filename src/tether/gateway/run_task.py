"""``RunTask``: one active run held under a lease, driven by its agent backend.

It is also the backend's :class:`~tether.agents.contract.RunContext`. It renews the
lease (a lost lease *fences* it: it stops at once and writes nothing more), numbers its
events and records them in order through the :class:`~tether.gateway.run_log.RunLog`,
enforces the wall-clock cap and the no-progress watchdog, and ends the run:
cancellation is pushed to the backend (``ctx.cancelled``) and escalated to a hard task
cancel after the grace period. It sees only what :class:`RunEnv` gives it.

Steering input it accepted is the agent's to read (``take_steering``). What the agent
had not read when it finished becomes the session's next run (``steering.requeued``),
so ``steered`` always means the agent will see it; only a cancelled run drops it, and
says so (``steering.dropped``, reason ``run_cancelled``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from tether.agents.contract import AgentBackend, Outcome, PastEvent, SessionSettings
from tether.config import RunsConfig
from tether.errors import Conflict, InvalidParams, NotFound, TetherError
from tether.gateway.authorization import Authorization, freeze
from tether.gateway.call_gate import CallGate, Verdict
from tether.gateway.run_log import RunLog
from tether.gateway.tools import ToolGateway
from tether.ledger import Run, Session
from tether.protocol.events import (
    RunCancelled,
    RunCancelRequested,
    RunEvent,
    RunFailed,
    RunRecovered,
    RunRunning,
    RunStarted,
    RunStopEscalated,
    RunSucceeded,
    RunWaiting,
    SteeringDropped,
    SteeringRequeued,
    ToolCallFailed,
    ToolCallOutput,
    ToolCallRequested,
    ToolCallSucceeded,
)
from tether.protocol.runners import ToolInfo
from tether.security.redaction import redact, redact_json, redact_value
from tether.security.stream_redaction import StreamRedactor
from tether.types import RunState, new_id

__all__ = ["RunEnv", "RunTask"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunEnv:
    """What a run needs from the gateway, and nothing more."""

    log: RunLog
    tools: ToolGateway
    gate: CallGate
    """Policy, approvals and questions for the run's tool calls."""
    config: RunsConfig
    owner: str
    """This gateway incarnation's lease owner name."""
    tool_timeout: float = 60.0
    on_lease_lost: Callable[[], None] = lambda: None
    requeue: Callable[[str, str, str | None], Awaitable[str]] | None = None
    """``(session_id, text, sender) -> run id``: start a session's next run with input."""
    clock: Callable[[], float] = time.monotonic


class Fenced(Exception):
    """The lease was lost: stop touching the run."""


class RunTask:
    """Drives one run. See the module docstring."""

    def __init__(
        self,
        env: RunEnv,
        run: Run,
        backend: AgentBackend,
        *,
        resumed: bool,
        next_seq: int | None = None,
        raw_input: str | None = None,
    ) -> None:
        """``next_seq`` None: read from the ledger on first use, so the orchestrator can
        register the task the moment it holds the run (steering then finds it).
        ``raw_input``: the input as submitted, when the gateway that accepted the run
        still holds it (the ledger keeps it redacted)."""
        self.env = env
        self.record = run
        self._settings = SessionSettings(agent=run.agent, runner=None, workspace=None, mode="ask")
        """Read from the session when the run starts (:meth:`main`)."""
        self.authorization = Authorization()
        """What the run may ever use: nothing until :meth:`main` freezes it."""
        self.session: Session | None = None
        """The session as it was when the run started (read by :meth:`main`)."""
        self._input = raw_input if raw_input is not None else run.input
        self.backend = backend
        self._resumed = resumed
        self._seq = next_seq
        self._lock = asyncio.Lock()
        self._cancelled = asyncio.Event()
        self._stop = asyncio.Event()
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.finishing = False
        """The agent is done and the run is being ended: it takes no more steering."""
        self.fenced = False
        self.steering: collections.deque[tuple[str, str | None]] = collections.deque()
        """Accepted steering input the agent has not taken: (text, sender)."""
        self.last_progress = env.clock()
        self.started = env.clock()
        self.task: asyncio.Task[None] | None = None
        self.calls: set[str] = set()
        """Tool calls in flight (cancelled on the runner when the run stops)."""
        self._side: set[asyncio.Task[Any]] = set()

    @property
    def state(self) -> RunState:
        return self.record.state

    # ---- recording -----------------------------------------------------------------

    async def _record(
        self,
        event: RunEvent,
        *,
        to: RunState | None = None,
        reason: str | None = None,
        output: str | None = None,
        origin: int | None = None,
    ) -> int:
        """Record one event (with a state change when ``to`` is given), in seq order."""
        if self.fenced:
            raise Conflict(f"run {self.run_id} is no longer held by this gateway")
        async with self._lock:
            seq = self._seq if self._seq is not None else await self.env.log.next_seq(self.run_id)
            try:
                stored, self.record = await self.env.log.record(
                    self.record, event, seq=seq, to=to, reason=reason, output=output, origin=origin
                )
            except Conflict as exc:
                self._fence(exc.message)
                raise
            self._seq = seq + 1
        self.last_progress = self.env.clock()
        return stored.seq

    async def _record_own(self, event: RunEvent, **transition: Any) -> None:
        """Record a gateway event; losing the lease meanwhile ends the task (Fenced)."""
        try:
            await self._record(event, **transition)
        except Conflict as exc:
            raise Fenced from exc

    # ---- RunContext ----------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.record.id

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def input(self) -> str:
        return self._input

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def attempt(self) -> int:
        return self.record.attempts

    @property
    def resumed(self) -> bool:
        return self._resumed

    @property
    def cancelled(self) -> asyncio.Event:
        return self._cancelled

    @property
    def creator(self) -> str | None:
        """Who started the run: the default approver of its requests."""
        return self.record.created_by

    @property
    def mode(self) -> str:
        return self._settings.mode

    def closes_requests(self) -> bool:
        return self.stop_reason in ("cancelled", "timeout", "stalled")

    async def tools(self) -> list[ToolInfo]:
        runner_id = self._settings.runner
        live = self.env.tools.registry.get(runner_id) if runner_id is not None else None
        if live is None:
            return []
        auth = self.authorization
        return [
            live.tools[name]
            for name in sorted(live.tools)
            if auth.any or (live.runner_id == auth.runner_id and name in auth.tools)
        ]

    async def ask(
        self, question: str, choices: Sequence[str] = (), timeout: float | None = None
    ) -> str:
        return await self.env.gate.question(self, question, list(choices), timeout)

    async def emit(self, event: RunEvent) -> int:
        """An agent's event: only kinds an agent records (``agent.*``); a backend cannot
        write what the gateway or a runner says (a run's end, a decision, a tool's result)."""
        if event.SOURCE != "agent":
            raise InvalidParams(
                f"an agent may not record {event.KIND!r} (the {event.SOURCE} records it)",
                data={"kind": event.KIND},
            )
        return await self._record(event)

    async def record_events(self, events: Sequence[tuple[RunEvent, int | None]]) -> None:
        """Gateway (or runner) events of this run, each with its ``origin``, in one commit."""
        if self.fenced:
            raise Conflict(f"run {self.run_id} is no longer held by this gateway")
        if not events:
            return
        async with self._lock:
            seq = self._seq if self._seq is not None else await self.env.log.next_seq(self.run_id)
            try:
                await self.env.log.record_many(self.record, events, seq=seq)
            except Conflict as exc:
                self._fence(exc.message)
                raise
            self._seq = seq + len(events)
        self.last_progress = self.env.clock()

    async def record_event(self, event: RunEvent, origin: int | None = None) -> int:
        """A gateway (or runner) event of this run; ``origin``: a hosted agent's number
        for it (see ``tether.gateway.hosted``)."""
        return await self._record(event, origin=origin)

    async def set_waiting(self, waiting: bool, reason: str = "") -> None:
        if waiting and self.state == RunState.RUNNING:
            await self._record(RunWaiting(reason=reason), to=RunState.WAITING)
        elif not waiting and self.state == RunState.WAITING:
            await self._record(RunRunning(reason=reason), to=RunState.RUNNING)

    def take_steering(self) -> list[str]:
        items = [text for text, _ in self.steering]
        self.steering.clear()
        return items

    async def history(self) -> Sequence[PastEvent]:
        store = self.env.log.ledger.events
        events = await store.read(self.run_id, limit=100_000)
        return [
            PastEvent(
                seq=e.seq,
                kind=e.kind,
                source=e.source,
                payload=msgspec.json.decode(await store.full_payload(e)),
            )
            for e in events
        ]

    async def call_tool(
        self,
        *,
        runner: str,
        tool: str,
        args: dict[str, Any],
        workspace: str = "",
        timeout: float | None = None,
        call_id: str | None = None,
        granted: Verdict | None = None,
    ) -> Any:
        """Run one tool call through the gate (policy, a person, a token) and record it.
        ``call_id``: the id to use (a hosted agent's, stable across re-sends); ``granted``:
        see :meth:`CallGate.admit`."""
        tools = self.env.tools
        call_id = call_id or new_id("call")
        runner = runner or self._settings.runner or ""
        workspace = workspace or self._settings.workspace or ""
        if not runner:
            raise InvalidParams(
                "no runner named, and the session has none (set one with "
                f"`tether sessions set {self.session_id} --runner NAME`)",
                data={"field": "runner"},
            )

        def requested(runner_name: str, space: str, cid: str) -> ToolCallRequested:
            return ToolCallRequested(
                call_id=cid,
                runner=runner_name,
                tool=tool,
                args=redact_value(args),
                workspace=space,
            )

        try:
            # after a restart the runner may not have reconnected yet: give it a moment
            wait = self.env.config.resume_runner_wait if self._resumed else 0.0
            live, workspace = await tools.target(runner, workspace, wait=wait)
        except NotFound:
            raise  # no such runner: nothing was requested
        except TetherError as exc:  # offline, or the workspace must be named
            await self.record_event(requested(runner, workspace, call_id))
            await self._call_failed(call_id, exc)
            raise

        async def announce(cid: str) -> None:
            await self.record_event(requested(live.name, workspace, cid))

        try:
            verdict = await self.env.gate.admit(
                self,
                call_id=call_id,
                live=live,
                tool=tool,
                args=args,
                workspace=workspace,
                announce=announce,
                granted=granted,
            )
        except TetherError as exc:
            await self._call_failed(str(exc.data.get("call_id") or call_id), exc)
            raise
        call_id = verdict.call_id or call_id
        outputs = _Outputs(self, call_id, verdict.settled)
        self.calls.add(call_id)
        try:
            outcome = await tools.execute(
                call_id=call_id,
                runner_id=live.runner_id,
                tool=tool,
                args=args,
                workspace=workspace,
                timeout=timeout or self.env.tool_timeout,
                run_id=self.run_id,
                requested_by=self.record.created_by,
                decided_by=verdict.by,
                rule=verdict.rule,
                request_id=verdict.request_id,
                progress=outputs.feed,
            )
        except TetherError as exc:
            await outputs.flush()
            await self._call_failed(call_id, exc)
            raise
        except asyncio.CancelledError:
            if verdict.settled is not None:
                verdict.settled.cancel()
            raise
        finally:
            self.calls.discard(call_id)
        await outputs.flush()
        result = msgspec.json.decode(outcome.result)
        await self.record_event(
            ToolCallSucceeded(call_id=call_id, duration=round(outcome.duration, 6), result=result)
        )
        return result

    async def _call_failed(self, call_id: str, exc: TetherError) -> None:
        await self.record_event(ToolCallFailed(call_id=call_id, code=exc.code, message=exc.message))

    # ---- control from outside ------------------------------------------------------

    @property
    def takes_steering(self) -> bool:
        """The agent may still read steering input (it declares steering, and the run is
        neither stopping nor being ended)."""
        return (
            self.backend.capabilities.steering and self.stop_reason is None and not self.finishing
        )

    def steer(self, text: str, sender: str | None = None) -> bool:
        """Queue steering input; False when the queue is full or the run is stopping (the
        caller records the drop)."""
        if self.stop_reason is not None or len(self.steering) >= self.env.config.steering_queue:
            return False
        if self.finishing:
            return False
        self.steering.append((text, sender))
        return True

    def request_stop(self, reason: str, detail: str = "") -> None:
        """Stop the run: ``cancelled``, ``timeout``, ``stalled``, ``fenced`` or ``shutdown``."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_detail = detail
        self._stop.set()
        if reason != "shutdown":
            for call_id in list(self.calls):
                self._spawn(self.env.tools.cancel(call_id), "cancel")

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"run:{self.run_id}:{what}")
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _fence(self, why: str) -> None:
        if not self.fenced:
            self.fenced = True
            self.env.on_lease_lost()
            log.warning("! lease lost; stopping the run", extra={"run_id": self.run_id, "why": why})
            self.request_stop("fenced", why)

    # ---- the run -------------------------------------------------------------------

    async def main(self) -> None:
        renewer = asyncio.create_task(self._renew_loop(), name=f"run:{self.run_id}:renew")
        watchdog = asyncio.create_task(self._watchdog(), name=f"run:{self.run_id}:watchdog")
        try:
            session = await self.env.log.ledger.sessions.get(self.session_id)
            self.session = session
            self._settings = SessionSettings(
                agent=session.agent,
                runner=session.runner_id,
                workspace=session.workspace,
                mode=session.mode,
                thread=session.agent_thread,
            )
            self.authorization, storing = await self._authorize(session)
            first: RunEvent = (
                RunRecovered(attempt=self.attempt)
                if self._resumed
                else RunStarted(agent=self.backend.name, attempt=self.attempt)
            )
            # both ride one group commit; the agent starts only once both are stored
            await asyncio.gather(storing, self._record_own(first))
            outcome = await self._drive()
            if outcome is not None:
                await self._finish(outcome)
        except Fenced:
            pass
        except Conflict as exc:
            log.warning("! run stopped: %s", exc.message, extra={"run_id": self.run_id})
        except Exception:
            log.exception("run task failed", extra={"run_id": self.run_id})
        finally:
            renewer.cancel()
            watchdog.cancel()
            for side in (renewer, watchdog):
                with contextlib.suppress(asyncio.CancelledError):
                    await side

    async def _drive(self) -> Outcome | None:
        """Run the backend until it returns or a stop is requested; None means abandon."""
        agent = asyncio.create_task(self.backend.run(self), name=f"run:{self.run_id}:agent")
        stop = asyncio.create_task(self._stop.wait(), name=f"run:{self.run_id}:stop")
        try:
            await asyncio.wait({agent, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if agent.done() and self.stop_reason is None:
            return _outcome_of(agent)
        self._cancelled.set()
        if self.stop_reason in ("fenced", "shutdown"):
            agent.cancel()
            with contextlib.suppress(BaseException):
                await agent
            if self.stop_reason == "shutdown":
                await self.env.log.ledger.runs.release(
                    self.run_id, self.env.owner, self.record.epoch
                )
            return None
        if self.stop_reason == "cancelled":
            await self._record_own(RunCancelRequested(reason=self.stop_detail))
        grace = self.env.config.cancel_grace
        try:
            await asyncio.wait_for(asyncio.shield(agent), grace)
        except TimeoutError:
            agent.cancel()
            with contextlib.suppress(BaseException):
                await agent
            await self._record_own(RunStopEscalated(after_seconds=grace))
        except BaseException:  # noqa: BLE001,S110 - the agent's own failure is irrelevant now
            pass
        return Outcome(state="failed", reason=self.stop_reason, output=self.stop_detail or None)

    async def _finish(self, outcome: Outcome) -> None:
        self.finishing = True  # from here on, new input is the session's next run
        await self._settle_steering()
        # an output may be JSON text (a tool's result): redacted as data, else as text
        output = redact_json(outcome.output) if outcome.output is not None else None
        reason = redact(outcome.reason) if outcome.reason is not None else None
        event: RunEvent
        if self.stop_reason == "cancelled":
            target, event = RunState.CANCELLED, RunCancelled(reason=reason, output=output)
        elif outcome.state == "succeeded":
            target, event = RunState.SUCCEEDED, RunSucceeded(reason=reason, output=output)
        else:
            target, event = RunState.FAILED, RunFailed(reason=reason, output=output)
        await self._record_own(event, to=target, reason=reason, output=output)

    async def _settle_steering(self) -> None:
        """Input the agent never took: the session's next run, or (cancelled) dropped."""
        left = list(self.steering)
        self.steering.clear()
        for text, sender in left:
            requeue = self.env.requeue
            if self.stop_reason is None and requeue is not None:
                run_id = await requeue(self.session_id, text, sender)
                await self._record_own(SteeringRequeued(text=text, run_id=run_id, sender=sender))
            else:
                reason = "run_cancelled" if self.stop_reason == "cancelled" else "run_ended"
                await self._record_own(SteeringDropped(text=text, reason=reason, sender=sender))

    async def _authorize(self, session: Session) -> tuple[Authorization, Awaitable[None]]:
        """The run's frozen authorization: read back when it has one, else computed from
        the agent's manifest and the session's runner; and the write that stores it with
        the run (nothing to write when it was read back)."""
        if self.record.authorization:
            return msgspec.json.decode(
                self.record.authorization, type=Authorization
            ), asyncio.sleep(0)
        offered: dict[str, Any] = {}
        if session.runner_id is not None:
            with contextlib.suppress(NotFound):
                offered = (await self.env.log.ledger.runners.get(session.runner_id)).offered()
        auth = freeze(
            getattr(self.backend, "manifest", None),
            runner_id=session.runner_id,
            workspace=session.workspace,
            offered=offered,
        )
        encoded = msgspec.json.encode(auth).decode()
        return auth, self.env.log.ledger.runs.authorize(self.run_id, self.record.epoch, encoded)

    # ---- side loops ----------------------------------------------------------------

    async def _renew_loop(self) -> None:
        lease = self.env.config.lease_seconds
        runs = self.env.log.ledger.runs
        deadline = self.env.clock() + lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                run = await runs.renew(self.run_id, self.env.owner, self.record.epoch, lease)
            except Conflict as exc:
                self._fence(exc.message)
                return
            except Exception as exc:  # noqa: BLE001 - database hiccups are retried until the lease ends
                log.warning(
                    "! lease renewal failed; retrying",
                    extra={"run_id": self.run_id, "error": getattr(exc, "message", repr(exc))},
                )
                if self.env.clock() > deadline - lease / 6:
                    self._fence("could not renew before the lease ran out")
                    return
                continue
            deadline = self.env.clock() + lease
            if run.cancel_requested_at is not None:
                self.request_stop("cancelled", "cancel requested")

    async def _watchdog(self) -> None:
        config = self.env.config
        tick = min(1.0, config.stall_timeout / 4, config.max_duration / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.env.clock()
            if now - self.started > config.max_duration:
                self.request_stop("timeout", f"ran longer than {config.max_duration:g} s")
                return
            if self.state == RunState.RUNNING and now - self.last_progress > config.stall_timeout:
                self.request_stop("stalled", f"no progress for {config.stall_timeout:g} s")
                return


class _Outputs:
    """A tool call's streamed output as ``tool.call.output`` events: each stream is
    redacted as a whole (a secret split across chunks is still masked)."""

    def __init__(
        self, task: RunTask, call_id: str, before: asyncio.Future[None] | None = None
    ) -> None:
        self.task = task
        self.call_id = call_id
        self.before = before
        """Events that must be recorded first (how the call was decided)."""
        self.streams: dict[str, StreamRedactor] = {}
        self.pending: set[asyncio.Task[int]] = set()

    async def _emit(self, event: RunEvent) -> int:
        if self.before is not None:
            await asyncio.shield(self.before)
        return await self.task.record_event(event)

    def _publish(self, stream: str, text: str) -> None:
        if text:
            kind: Literal["stdout", "stderr"] = "stderr" if stream == "stderr" else "stdout"
            event = ToolCallOutput(call_id=self.call_id, stream=kind, text=text)
            task = asyncio.get_running_loop().create_task(self._emit(event))
            self.pending.add(task)

    def feed(self, stream: str, text: str) -> None:
        redactor = self.streams.get(stream)
        if redactor is None:
            redactor = self.streams[stream] = StreamRedactor()
        self._publish(stream, redactor.feed(text))

    async def flush(self) -> None:
        """Record what is left of the output, after how the call was decided (whose
        failure, a lost lease, is raised here)."""
        for stream, redactor in self.streams.items():
            self._publish(stream, redactor.flush())
        await asyncio.gather(*self.pending, return_exceptions=True)
        if self.before is not None:
            await self.before


def _outcome_of(agent: asyncio.Task[Outcome]) -> Outcome:
    exc = agent.exception()
    if exc is not None:
        log.warning("! agent raised", extra={"error": repr(exc)})
        return Outcome(
            state="failed", reason="agent_error", output=redact(f"{type(exc).__name__}: {exc}")
        )
    return agent.result()
