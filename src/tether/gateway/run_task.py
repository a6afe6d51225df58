"""``RunTask``: one active run held under a lease, driven by its agent backend.

It is also the backend's :class:`~tether.agents.contract.RunContext`. It renews the
lease (a lost lease *fences* it: it stops at once and writes nothing more), numbers and
commits events in order, publishes them after commit, enforces the wall-clock cap and
the no-progress watchdog, and ends the run: cancellation is pushed to the backend
(``ctx.cancelled``) and escalated to a hard task cancel after the grace period.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tether.agents.contract import AgentBackend, Outcome, PastEvent
from tether.errors import Conflict, NotFound, RunnerOffline, TetherError
from tether.ledger import NewEvent, Run, RunState
from tether.security.redaction import redact, redact_json, redact_value
from tether.security.stream_redaction import StreamRedactor
from tether.types import new_id

if TYPE_CHECKING:
    from tether.gateway.orchestrator import Orchestrator

__all__ = ["RunTask", "encode_payload"]

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def encode_payload(payload: dict[str, Any]) -> str:
    """Event payload JSON, with secrets redacted (nothing secret reaches the ledger)."""
    return _encoder.encode(redact_value(payload)).decode()


class Fenced(Exception):
    """The lease was lost: stop touching the run."""


class RunTask:
    """Drives one run. See the module docstring."""

    def __init__(
        self,
        orch: Orchestrator,
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
        self.orch = orch
        self.record = run
        self._input = raw_input if raw_input is not None else run.input
        self.epoch = run.epoch
        self.backend = backend
        self._resumed = resumed
        self._seq = next_seq
        self._lock = asyncio.Lock()
        self._cancelled = asyncio.Event()
        self._stop = asyncio.Event()
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.fenced = False
        self.state = run.state
        self.steering: collections.deque[str] = collections.deque()
        self.last_progress = time.monotonic()
        self.started = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.calls: set[str] = set()
        self._side: set[asyncio.Task[Any]] = set()
        """Tool calls in flight (cancelled on the runner when the run stops)."""

    async def _next_seq(self) -> int:
        """The seq of the next event (call with the lock held)."""
        if self._seq is None:
            self._seq = await self.orch.ledger.events.last_seq(self.run_id) + 1
        return self._seq

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
    def attempt(self) -> int:
        return self.record.attempts

    @property
    def resumed(self) -> bool:
        return self._resumed

    @property
    def cancelled(self) -> asyncio.Event:
        return self._cancelled

    async def emit(self, kind: str, payload: dict[str, Any], *, source: str = "agent") -> int:
        if self.fenced:
            raise Conflict(f"run {self.run_id} is no longer held by this gateway")
        async with self._lock:
            seq = await self._next_seq()
            event = NewEvent(
                seq=seq,
                kind=kind,
                source=source,
                payload=encode_payload(payload),
                created_at=time.time(),
            )
            try:
                (stored,) = await self.orch.ledger.events.append(self.run_id, self.epoch, [event])
            except Conflict:
                self._fence("append conflict")
                raise
            self._seq = seq + 1
        self.last_progress = time.monotonic()
        self._publish(stored)
        return stored.seq

    async def set_waiting(self, waiting: bool, reason: str = "") -> None:
        target = RunState.WAITING if waiting else RunState.RUNNING
        if self.state == target:
            return
        kind = "run.waiting" if waiting else "run.running"
        await self._transition(target, kind, {"reason": reason} if reason else {})

    def take_steering(self) -> list[str]:
        items = list(self.steering)
        self.steering.clear()
        return items

    async def history(self) -> Sequence[PastEvent]:
        store = self.orch.ledger.events
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
    ) -> Any:
        orch = self.orch
        if orch.tools is None:
            raise RunnerOffline("this gateway has no tool dispatcher")
        call_id = new_id("call")
        requested = {
            "call_id": call_id,
            "runner": runner,
            "tool": tool,
            "args": redact_value(args),
            "workspace": workspace,
        }
        try:
            live, workspace = await orch.tools.target(runner, workspace)
        except NotFound:
            raise  # no such runner: nothing was requested
        except TetherError as exc:  # offline, or the workspace must be named
            await self.emit("tool.call.requested", requested, source="gateway")
            await self._call_failed(call_id, exc)
            raise
        requested.update(runner=live.name, workspace=workspace)
        await self.emit("tool.call.requested", requested, source="gateway")
        outputs: set[asyncio.Task[int]] = set()
        streams: dict[str, StreamRedactor] = {}

        def publish(stream: str, text: str) -> None:
            if text:
                payload = {"call_id": call_id, "stream": stream, "text": text}
                task = asyncio.get_running_loop().create_task(
                    self.emit("tool.call.output", payload, source="runner")
                )
                outputs.add(task)

        def progress(stream: str, text: str) -> None:
            # a secret split across chunks is masked: each stream is redacted as a whole
            redactor = streams.get(stream)
            if redactor is None:
                redactor = streams[stream] = StreamRedactor()
            publish(stream, redactor.feed(text))

        def flush() -> None:
            for stream, redactor in streams.items():
                publish(stream, redactor.flush())

        self.calls.add(call_id)
        try:
            outcome = await orch.tools.execute(
                call_id=call_id,
                runner_id=live.runner_id,
                tool=tool,
                args=args,
                workspace=workspace,
                timeout=timeout or orch.tool_timeout,
                run_id=self.run_id,
                requested_by=self.record.created_by,
                progress=progress,
            )
        except TetherError as exc:
            flush()
            await asyncio.gather(*outputs, return_exceptions=True)
            await self._call_failed(call_id, exc)
            raise
        finally:
            self.calls.discard(call_id)
        flush()
        await asyncio.gather(*outputs, return_exceptions=True)
        result = msgspec.json.decode(outcome.result)
        await self.emit(
            "tool.call.succeeded",
            {"call_id": call_id, "duration": round(outcome.duration, 6), "result": result},
            source="gateway",
        )
        return result

    async def _call_failed(self, call_id: str, exc: TetherError) -> None:
        await self.emit(
            "tool.call.failed",
            {"call_id": call_id, "code": exc.code, "message": exc.message},
            source="gateway",
        )

    # ---- control from outside ------------------------------------------------------

    def steer(self, text: str) -> bool:
        """Queue steering input; False when the queue is full (the caller records the drop)."""
        if len(self.steering) >= self.orch.config.steering_queue:
            return False
        self.steering.append(text)
        return True

    def request_stop(self, reason: str, detail: str = "") -> None:
        """Stop the run: ``cancelled``, ``timeout``, ``stalled``, ``fenced`` or ``shutdown``."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_detail = detail
        self._stop.set()
        tools = self.orch.tools
        if tools is not None and reason != "shutdown":
            for call_id in list(self.calls):
                self._spawn_cancel(tools, call_id)

    def _spawn_cancel(self, tools: Any, call_id: str) -> None:
        task = asyncio.get_running_loop().create_task(
            tools.cancel(call_id), name=f"run:{self.run_id}:cancel"
        )
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _fence(self, why: str) -> None:
        if not self.fenced:
            self.fenced = True
            self.orch.metrics_lease_lost()
            log.warning("! lease lost; stopping the run", extra={"run_id": self.run_id, "why": why})
            self.request_stop("fenced", why)

    # ---- the run -------------------------------------------------------------------

    async def main(self) -> None:
        renewer = asyncio.create_task(self._renew_loop(), name=f"run:{self.run_id}:renew")
        watchdog = asyncio.create_task(self._watchdog(), name=f"run:{self.run_id}:watchdog")
        try:
            if self._resumed:
                await self._emit_gateway("run.recovered", {"attempt": self.attempt})
            else:
                await self._emit_gateway(
                    "run.started", {"agent": self.backend.name, "attempt": self.attempt}
                )
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
                await self.orch.ledger.runs.release(self.run_id, self.orch.owner, self.epoch)
            return None
        if self.stop_reason == "cancelled":
            await self._emit_gateway("run.cancel_requested", {"reason": self.stop_detail})
        grace = self.orch.config.cancel_grace
        try:
            await asyncio.wait_for(asyncio.shield(agent), grace)
        except TimeoutError:
            agent.cancel()
            with contextlib.suppress(BaseException):
                await agent
            await self._emit_gateway("run.stop_escalated", {"after_seconds": grace})
        except BaseException:  # noqa: BLE001,S110 - the agent's own failure is irrelevant now
            pass
        return Outcome(state="failed", reason=self.stop_reason, output=self.stop_detail or None)

    async def _finish(self, outcome: Outcome) -> None:
        for text in self.take_steering():
            await self._emit_gateway("steering.dropped", {"reason": "run_ended", "text": text})
        if self.stop_reason == "cancelled":
            target, kind = RunState.CANCELLED, "run.cancelled"
        elif outcome.state == "succeeded":
            target, kind = RunState.SUCCEEDED, "run.succeeded"
            if self.state == RunState.WAITING:
                await self._transition(RunState.RUNNING, "run.running", {})
        else:
            target, kind = RunState.FAILED, "run.failed"
        # an output may be JSON text (a tool's result): redacted as data, else as text
        output = redact_json(outcome.output) if outcome.output is not None else None
        reason = redact(outcome.reason) if outcome.reason is not None else None
        payload: dict[str, Any] = {"reason": reason, "output": output}
        await self._transition(target, kind, payload, reason=reason, output=output)

    async def _transition(
        self,
        target: RunState,
        kind: str,
        payload: dict[str, Any],
        *,
        reason: str | None = None,
        output: str | None = None,
    ) -> None:
        if self.fenced:
            raise Fenced
        async with self._lock:
            seq = await self._next_seq()
            event = NewEvent(
                seq=seq,
                kind=kind,
                source="gateway",
                payload=encode_payload(payload),
                created_at=time.time(),
            )
            try:
                self.record = await self.orch.ledger.runs.transition(
                    self.run_id,
                    epoch=self.epoch,
                    to=target,
                    reason=reason,
                    output=output,
                    event=event,
                )
            except Conflict as exc:
                self._fence(exc.message)
                raise Fenced from exc
            self._seq = seq + 1
            self.state = target
        self.last_progress = time.monotonic()
        self._publish(event)

    async def _emit_gateway(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            await self.emit(kind, payload, source="gateway")
        except Conflict as exc:
            raise Fenced from exc

    def _publish(self, event: NewEvent) -> None:
        self.orch.fanout.publish(self.session_id, event.committed(self.run_id, self.epoch))

    # ---- side loops ----------------------------------------------------------------

    async def _renew_loop(self) -> None:
        lease = self.orch.config.lease_seconds
        deadline = time.monotonic() + lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                run = await self.orch.ledger.runs.renew(
                    self.run_id, self.orch.owner, self.epoch, lease
                )
            except Conflict as exc:
                self._fence(exc.message)
                return
            except TetherError as exc:
                log.warning(
                    "! lease renewal failed; retrying",
                    extra={"run_id": self.run_id, "error": exc.message},
                )
                if time.monotonic() > deadline - lease / 6:
                    self._fence("could not renew before the lease ran out")
                    return
                continue
            except Exception as exc:  # noqa: BLE001 - database hiccups are retried until the lease ends
                log.warning(
                    "! lease renewal failed; retrying",
                    extra={"run_id": self.run_id, "error": repr(exc)},
                )
                if time.monotonic() > deadline - lease / 6:
                    self._fence("could not renew before the lease ran out")
                    return
                continue
            deadline = time.monotonic() + lease
            if run.cancel_requested_at is not None:
                self.request_stop("cancelled", "cancel requested")

    async def _watchdog(self) -> None:
        config = self.orch.config
        tick = min(1.0, config.stall_timeout / 4, config.max_duration / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - self.started > config.max_duration:
                self.request_stop("timeout", f"ran longer than {config.max_duration:g} s")
                return
            if self.state == RunState.RUNNING and now - self.last_progress > config.stall_timeout:
                self.request_stop("stalled", f"no progress for {config.stall_timeout:g} s")
                return


def _outcome_of(agent: asyncio.Task[Outcome]) -> Outcome:
    exc = agent.exception()
    if exc is not None:
        log.warning("! agent raised", extra={"error": repr(exc)})
        return Outcome(
            state="failed", reason="agent_error", output=redact(f"{type(exc).__name__}: {exc}")
        )
    return agent.result()
