"""The gateway's side of hosted agents: a run is one turn of an agent on its runner.

:meth:`HostedService.drive` is the hosted backends' ``run``: it mints a capability token
bound to the runner, run, agent and workspace, starts the turn (``agent.start``), records
every event the runner sends (``agent.event``) in order with its number as the event's
``origin``, acknowledges them once committed (``agent.ack``), passes steering
(``agent.steer``) and a stop (``agent.interrupt``), and returns the turn's outcome.

Nothing is lost or recorded twice: when the runner's connection drops the turn goes on
there, and once the runner is back the drive attaches again (``agent.start`` with
``after`` = the last number committed) and the runner replays the rest. A gateway that
restarts resumes the run and does the same, reading ``after`` from the ledger
(``EventStore.last_origin``). Numbers it already has are ignored; a gap makes it attach
again.

What a runner may record is limited (:data:`~tether.protocol.hosted.HOST_KINDS`, each
checked against the catalogue): agent text and status, and the agent's tool calls,
whose ``runner`` and ``workspace`` are the drive's own and whose only decision it may
record is its sandbox's (``by: agent_sandbox``). Decisions are tether's:
``agent.permission`` goes through the :class:`~tether.gateway.call_gate.CallGate`
(authorization, policy, a person) and the answer is ``accept`` (once), ``decline``, or
``cancel`` when the run is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tether.agents.contract import Outcome, RunContext
from tether.config import RunsConfig
from tether.errors import (
    ApprovalDenied,
    ApprovalExpired,
    CapabilityDenied,
    InvalidParams,
    NotFound,
    PolicyDenied,
    RunnerOffline,
    TetherError,
)
from tether.gateway.call_gate import CallGate, Verdict
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.gateway.run_task import RunTask
from tether.gateway.runner_link import SocketRunnerLink
from tether.gateway.tools import ToolGateway
from tether.ledger import Ledger, Session
from tether.policy import Call, describe_call
from tether.policy.calls import normalize_path
from tether.protocol.events import (
    AgentStatus,
    RunEvent,
    ToolCallDecided,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallSucceeded,
    decode_payload,
)
from tether.protocol.hosted import (
    HOST_KINDS,
    TURN_ENDED,
    AgentAckNote,
    AgentEventNote,
    AgentPermissionAnswer,
    AgentPermissionParams,
    AgentStartParams,
    AgentSteerParams,
    AgentStopParams,
    AgentToolAnswer,
    AgentToolParams,
    AgentTurnParams,
    AgentWithdrawNote,
    op_call_id,
)
from tether.protocol.methods import (
    AGENT_ACK,
    AGENT_DONE,
    AGENT_EVENT,
    AGENT_INTERRUPT,
    AGENT_PERMISSION,
    AGENT_START,
    AGENT_STEER,
    AGENT_STOP,
    AGENT_TOOL,
    AGENT_WITHDRAW,
)
from tether.security.capability import CapabilityIssuer
from tether.security.redaction import redact, redact_value

__all__ = ["HostedService"]

log = logging.getLogger(__name__)

ACK_EVERY = 32
"""Events committed between two ``agent.ack``."""
BURST = 256
"""Events committed together at most."""
QUEUE_MAX = 10_000
"""Events held for one drive before it drops the rest and asks for a replay."""
START_TIMEOUT = 120.0
QUIET = 30.0
"""Seconds without an event after which the drive attaches again (a safety net)."""
POLL = 0.2


class _Reattach(Exception):
    """The runner's stream broke (a reconnect, a gap): attach again and replay."""


@dataclass
class _Drive:
    task: RunTask
    agent: str
    live: LiveRunner
    workspace: str
    recorded: int
    """The last event number committed."""
    queue: asyncio.Queue[AgentEventNote] = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    acked: int = 0
    admitted: set[str] = field(default_factory=set)
    """Calls tether allowed (recorded in ``tool_calls``): their outcome is recorded too."""
    granted: dict[str, tuple[AgentPermissionParams, Verdict]] = field(default_factory=dict)
    """The agent's actions tether allowed, by call id: a file write or command the agent
    then asks its client for (ACP) to carry one out is decided by it."""
    unsteerable: bool = False
    """The agent refused steering once: the rest waits for the session's next run."""
    saved: tuple[str | None, str | None] = (None, None)
    """The thread and resume command last stored with the session."""


class HostedService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        registry: RunnerRegistry,
        link: SocketRunnerLink,
        tools: ToolGateway,
        gate: CallGate,
        issuer: CapabilityIssuer,
        config: RunsConfig,
    ) -> None:
        self.ledger = ledger
        self.registry = registry
        self.link = link
        self.tools = tools
        self.gate = gate
        self.issuer = issuer
        self.config = config
        self.drives: dict[str, _Drive] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._side: set[asyncio.Task[Any]] = set()
        self.agents: set[str] = set()
        """The hosted agents' names (set when the backends are bound)."""

    def session_changed(self, before: Session, after: Session) -> None:
        """A session moved off its hosted agent (another agent, runner or workspace): its
        runner stops the agent process (the thread stays; the next run resumes it)."""
        place = before.agent, before.runner_id, before.workspace
        if before.agent not in self.agents or before.runner_id is None:
            return
        if place == (after.agent, after.runner_id, after.workspace):
            return
        if any(d.task.session_id == before.id for d in self.drives.values()):
            return  # a turn is running: it goes on; the idle timeout stops the process later
        self._spawn(self._stop_agent(before.runner_id, before.id), f"hosted:{before.id}:stop")

    async def _stop_agent(self, runner_id: str, session_id: str) -> None:
        if self.registry.get(runner_id) is None:
            return  # not connected: its idle timeout stops the process
        with contextlib.suppress(TetherError):
            await self.link.call(
                runner_id,
                AGENT_STOP,
                AgentStopParams(session_id=session_id),
                deadline=time.monotonic() + 15,
            )

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(AGENT_EVENT, self.on_event)
        handlers.add(AGENT_WITHDRAW, self.on_withdraw)
        handlers.add(AGENT_PERMISSION, self.link.serve(self.permission))
        handlers.add(AGENT_TOOL, self.link.serve(self.tool))

    # ---- a run ---------------------------------------------------------------------

    async def drive(self, agent: str, ctx: RunContext) -> Outcome:
        if not isinstance(ctx, RunTask):
            return _failed("agent_error", "a hosted agent runs only inside the gateway")
        task = ctx
        runner = task.settings.runner
        if runner is None:
            return _failed(
                "no_runner",
                f"{agent} runs on a runner, next to the code: give the session one with "
                f"`tether sessions set {task.session_id} --runner NAME`",
            )
        wait = self.config.resume_runner_wait if task.resumed else 0.0
        try:
            live, workspace = await self.tools.target(
                runner, task.settings.workspace or "", wait=wait
            )
        except TetherError as exc:
            return _failed(exc.code, exc.message)
        if agent not in live.agents:
            return _failed(
                "agent_not_installed",
                f"runner {live.name} does not host {agent}: install it there (see "
                "docs/agents.md) and restart the runner",
            )
        # a run this gateway starts has recorded nothing from its runner yet
        recorded = await self.ledger.events.last_origin(task.run_id) if task.resumed else 0
        drive = _Drive(task=task, agent=agent, live=live, workspace=workspace, recorded=recorded)
        self.drives[task.run_id] = drive
        self._arrived.setdefault(task.run_id, asyncio.Event()).set()
        try:
            # once the run ends, the orchestrator closes what it asked and nobody decided
            return await self._turn(drive)
        finally:
            self.drives.pop(task.run_id, None)
            self._arrived.pop(task.run_id, None)

    async def _turn(self, drive: _Drive) -> Outcome:
        task = drive.task
        attach = task.resumed or drive.recorded > 0
        while True:
            try:
                await self._start(drive, attach=attach)
            except RunnerOffline:
                back = await self._runner_back(drive)
                if back is None:
                    return _failed(
                        "runner_offline",
                        f"runner {drive.live.name} went away during the turn and did not "
                        f"come back within {self.config.resume_runner_wait:g} s",
                    )
                attach = True
                continue
            except TetherError as exc:
                return _failed(exc.code, exc.message)
            attach = True
            try:
                outcome = await self._consume(drive)
            except _Reattach:
                log.info(
                    "attaching to a hosted turn again",
                    extra={"run_id": task.run_id, "after": drive.recorded},
                )
                gone = self.registry.get(drive.live.runner_id) is not drive.live
                if gone and await self._runner_back(drive) is None:
                    return _failed(
                        "runner_offline",
                        f"runner {drive.live.name} went away during the turn and did "
                        f"not come back within {self.config.resume_runner_wait:g} s",
                    )
                continue
            self._ack(drive, force=True)
            self._spawn(self._done(drive), f"hosted:{task.run_id}:done")
            return outcome

    async def _done(self, drive: _Drive) -> None:
        """The runner may forget the turn (sent while the run's end is recorded)."""
        with contextlib.suppress(TetherError):
            await self.link.call(
                drive.live.runner_id,
                AGENT_DONE,
                AgentTurnParams(run_id=drive.task.run_id),
                deadline=time.monotonic() + 10,
            )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _start(self, drive: _Drive, *, attach: bool) -> None:
        task = drive.task
        token, _cap = self.issuer.mint(
            runner_id=drive.live.runner_id,
            call_id=task.run_id,
            tool=f"agent:{drive.agent}",
            args={"session": task.session_id},
            workspace=drive.workspace,
            run_id=task.run_id,
            ttl=int(START_TIMEOUT),
        )
        params = AgentStartParams(
            run_id=task.run_id,
            session_id=task.session_id,
            agent=drive.agent,
            workspace=drive.workspace,
            input=task.input,
            token=token,
            after=drive.recorded,
            resumed=attach,
            thread=None if attach else task.settings.thread,
        )
        result = await self.link.call(
            drive.live.runner_id,
            AGENT_START,
            params,
            deadline=time.monotonic() + START_TIMEOUT,
            call_key=f"{task.run_id}:{drive.recorded}:{attach}",
        )
        known = task.session
        stored = (known.agent_thread, known.agent_resume) if known is not None else (None, None)
        if result.thread and (result.thread, result.resume) not in (stored, drive.saved):
            drive.saved = (result.thread, result.resume)
            await self.ledger.sessions.update(
                task.session_id, agent_thread=result.thread, agent_resume=result.resume or ""
            )

    async def _runner_back(self, drive: _Drive) -> LiveRunner | None:
        back = await self.registry.wait_back(
            drive.live.runner_id, self.config.resume_runner_wait, gone=drive.live.peer
        )
        if back is not None:
            drive.live = back
        return back

    async def _consume(self, drive: _Drive) -> Outcome:
        """Record the turn's events until it ends; raise :class:`_Reattach` to replay."""
        task = drive.task
        interrupted = False
        quiet_since = time.monotonic()
        while True:
            if self.registry.get(drive.live.runner_id) is not drive.live:
                raise _Reattach
            if drive.overflowed:
                drive.overflowed = False
                drive.queue = asyncio.Queue()
                raise _Reattach
            if task.cancelled.is_set() and not interrupted:
                interrupted = True
                # a runner that is away gets it again once the drive has attached again
                with contextlib.suppress(TetherError):
                    await self._send(drive, AGENT_INTERRUPT, AgentTurnParams(run_id=task.run_id))
            await self._steer(drive)
            try:
                note = await asyncio.wait_for(drive.queue.get(), POLL)
            except TimeoutError:
                self._ack(drive)
                if time.monotonic() - quiet_since > QUIET:
                    raise _Reattach from None  # nothing for a while: make sure nothing was lost
                continue
            quiet_since = time.monotonic()
            burst = [note]  # what has arrived meanwhile goes in the same commit
            while not drive.queue.empty() and len(burst) < BURST:
                burst.append(drive.queue.get_nowait())
            ended = await self._record(drive, burst)
            if ended is not None:
                return self._outcome(ended.payload)

    async def _record(self, drive: _Drive, notes: list[AgentEventNote]) -> AgentEventNote | None:
        """Commit the next notes in order (one commit); the turn's end if among them.
        Replays of what is committed are skipped; a gap raises :class:`_Reattach`."""
        events: list[tuple[RunEvent, int | None]] = []
        ended = None
        gap = False
        expected = drive.recorded + 1
        for note in notes:
            if note.n < expected:
                continue
            if note.n > expected:
                gap = True  # lost on the way: what is before it is recorded, then a replay
                drive.queue = asyncio.Queue()
                break
            if note.kind == TURN_ENDED:
                ended = note
                break
            event = self._checked(drive, note)
            # not recordable: the numbering stays whole with a status saying so
            events.append((event or _not_recorded(note.kind), note.n))
            expected += 1
        await drive.task.record_events(events)
        for event, _ in events:
            await self._finish_call(drive, event)
        drive.recorded = expected - 1
        if gap:
            raise _Reattach
        if drive.recorded - drive.acked >= ACK_EVERY:
            self._ack(drive)
        return ended

    def _checked(self, drive: _Drive, note: AgentEventNote) -> RunEvent | None:
        """The catalogue event a runner's note stands for, or None if it may not say it."""
        if note.kind not in HOST_KINDS or note.kind == TURN_ENDED:
            log.warning("! a runner sent an event it may not record", extra={"kind": note.kind})
            return None
        try:
            event = decode_payload(note.kind, msgspec.json.encode(note.payload))
        except (msgspec.ValidationError, msgspec.DecodeError):
            event = None
        if event is None:
            log.warning("! a runner sent an invalid event", extra={"kind": note.kind})
            return None
        if isinstance(event, ToolCallRequested):
            event = msgspec.structs.replace(
                event, runner=drive.live.name, workspace=drive.workspace
            )
        elif isinstance(event, ToolCallDecided):
            event = msgspec.structs.replace(event, by="agent_sandbox")
        return event

    async def _finish_call(self, drive: _Drive, event: RunEvent) -> None:
        if isinstance(event, ToolCallSucceeded) and event.call_id in drive.admitted:
            drive.admitted.discard(event.call_id)
            await self.ledger.tool_calls.finish(
                event.call_id,
                state="succeeded",
                result=msgspec.json.encode(redact_value(event.result)).decode(),
            )
        elif isinstance(event, ToolCallFailed) and event.call_id in drive.admitted:
            drive.admitted.discard(event.call_id)
            await self.ledger.tool_calls.finish(
                event.call_id, state="failed", error_code=event.code, error=redact(event.message)
            )

    @staticmethod
    def _outcome(payload: dict[str, Any]) -> Outcome:
        status = payload.get("status")
        output = payload.get("output")
        output = output if isinstance(output, str) else None
        if status == "completed":
            return Outcome(state="succeeded", output=output)
        reason = payload.get("reason")
        message = payload.get("message")
        text = message if isinstance(message, str) and message else output
        return Outcome(
            state="failed",
            reason=str(reason or ("interrupted" if status == "interrupted" else "agent_error")),
            output=text,
        )

    def _ack(self, drive: _Drive, *, force: bool = False) -> None:
        if drive.recorded > drive.acked or (force and drive.recorded):
            drive.acked = drive.recorded
            self.link.notify(
                drive.live.runner_id,
                AGENT_ACK,
                AgentAckNote(run_id=drive.task.run_id, n=drive.recorded),
            )

    async def _steer(self, drive: _Drive) -> None:
        task = drive.task
        if task.cancelled.is_set() or not task.steering or drive.unsteerable:
            return
        texts = task.take_steering()
        for index, text in enumerate(texts):
            try:
                await self._send(
                    drive, AGENT_STEER, AgentSteerParams(run_id=task.run_id, text=text)
                )
            except TetherError as exc:
                # not taken: the session's next run gets it (RunTask settles what is left)
                log.info("steering not delivered", extra={"error": exc.message})
                task.steering.extend((left, None) for left in texts[index:])
                drive.unsteerable = True
                return

    async def _send(self, drive: _Drive, method: Any, params: Any) -> None:
        await self.link.call(drive.live.runner_id, method, params, deadline=time.monotonic() + 30)

    # ---- from runners --------------------------------------------------------------

    def on_event(self, peer: Peer, note: AgentEventNote) -> None:
        drive = self.drives.get(note.run_id)
        if drive is None or peer.runner_id != drive.live.runner_id:
            return  # not driven here (yet): the drive replays it when it attaches
        if drive.queue.qsize() >= QUEUE_MAX:
            drive.overflowed = True
            return
        drive.queue.put_nowait(note)

    async def on_withdraw(self, peer: Peer, note: AgentWithdrawNote) -> None:
        """The agent closed a request itself: close the person's request for it."""
        drive = self.drives.get(note.run_id)
        if drive is None or peer.runner_id != drive.live.runner_id:
            return
        for record in await self.ledger.requests.for_run(note.run_id):
            if not record.is_open:
                continue
            question = note.kind == "question" and record.kind == "question"
            if question or record.call_id == note.call_id:
                await self.gate.requests.close_run(
                    note.run_id, "agent.withdrew", request_id=record.id
                )

    async def _drive_of(self, run_id: str) -> _Drive | None:
        """The run's drive, waiting a while for it (a gateway that just restarted resumes
        its runs first)."""
        drive = self.drives.get(run_id)
        if drive is not None:
            return drive
        arrived = self._arrived.setdefault(run_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), self.config.resume_runner_wait)
        return self.drives.get(run_id)

    async def permission(self, runner_id: str, p: AgentPermissionParams) -> AgentPermissionAnswer:
        drive = await self._drive_of(p.run_id)
        if drive is None or drive.live.runner_id != runner_id:
            return AgentPermissionAnswer(
                decision="decline", message="this run is not active on this gateway"
            )
        task = drive.task
        if task.cancelled.is_set():
            return AgentPermissionAnswer(decision="cancel", message="the run is stopping")
        if p.kind == "question":
            return await self._question(task, p)
        call = _call_for(p, drive.workspace)
        live = drive.live

        async def announce(call_id: str) -> None:
            await task.record_event(
                ToolCallRequested(
                    call_id=call_id,
                    runner=live.name,
                    tool=call.tool,
                    args=redact_value(p.args),
                    workspace=drive.workspace,
                )
            )

        try:
            verdict = await self.gate.admit(
                task,
                call_id=p.call_id,
                live=live,
                tool=call.tool,
                args=p.args,
                workspace=drive.workspace,
                announce=announce,
                call=call,
            )
        except (PolicyDenied, ApprovalDenied, ApprovalExpired, CapabilityDenied) as exc:
            return _refused(task, exc.message)
        if verdict.settled is not None:
            await verdict.settled
        call_id = verdict.call_id or p.call_id
        await self.tools.record_hosted(
            call_id=call_id,
            run_id=task.run_id,
            runner_id=live.runner_id,
            tool=call.tool,
            args=p.args,
            workspace=drive.workspace,
            requested_by=task.creator,
            decided_by=verdict.by,
            rule=verdict.rule,
            request_id=verdict.request_id,
        )
        drive.admitted.add(call_id)
        drive.granted[call_id] = (p, verdict)
        return AgentPermissionAnswer(decision="accept")

    async def tool(self, runner_id: str, p: AgentToolParams) -> AgentToolAnswer:
        """An ACP agent's file read or write or command, as a tool call of the run: the
        gate decides (or the permission it carries out, ``covers``), the token is minted
        and the call sent back to the runner. A call id already in the ledger (the gateway
        restarted while it ran) is answered from there and never run twice."""
        drive = await self._drive_of(p.run_id)
        if drive is None or drive.live.runner_id != runner_id:
            return AgentToolAnswer(
                ok=False, code="not_found", message="this run is not active on this gateway"
            )
        task = drive.task
        if task.cancelled.is_set():
            return AgentToolAnswer(ok=False, code="cancelled", message="the run is stopping")
        call_id = op_call_id(task.run_id, p.call_id)
        with contextlib.suppress(NotFound):
            earlier = await self.ledger.tool_calls.get(call_id)
            if earlier.state == "succeeded" and earlier.result is not None:
                return AgentToolAnswer(ok=True, result=msgspec.json.decode(earlier.result))
            return AgentToolAnswer(
                ok=False,
                code=earlier.error_code or "interrupted",
                message=earlier.error
                or "the gateway restarted while this ran; it is not run a second time",
            )
        try:
            result = await task.call_tool(
                runner=drive.live.runner_id,
                tool=p.tool,
                args=p.args,
                workspace=drive.workspace,
                call_id=call_id,
                granted=_covered(drive, p),
            )
        except TetherError as exc:
            reason = exc.data.get("reason")
            return AgentToolAnswer(
                ok=False,
                code=exc.code,
                reason=reason if isinstance(reason, str) else "",
                message=exc.message,
            )
        return AgentToolAnswer(ok=True, result=result)

    async def _question(self, task: RunTask, p: AgentPermissionParams) -> AgentPermissionAnswer:
        try:
            answer = await self.gate.question(task, p.question or "?", list(p.choices), None)
        except (ApprovalDenied, ApprovalExpired, InvalidParams) as exc:
            return _refused(task, exc.message)
        return AgentPermissionAnswer(decision="accept", answer=answer)


def _covered(drive: _Drive, p: AgentToolParams) -> Verdict | None:
    """The decision of the agent's action this request carries out, if it matches: a
    write of one of the paths it was allowed to change, or the very command."""
    if p.covers is None or p.covers not in drive.granted:
        return None
    asked, verdict = drive.granted[p.covers]
    if p.tool == "write_file" and asked.kind == "file_change":
        paths = {normalize_path(str(x)) for x in asked.args.get("paths") or []}
        if normalize_path(str(p.args.get("path") or "")) not in paths:
            return None
    elif p.tool == "shell" and asked.kind == "command":
        if p.args.get("command") != asked.args.get("command"):
            return None
    else:
        return None
    return Verdict(
        by=verdict.by,
        rule=f"carries out call {p.covers}: {verdict.rule}"[:500],
        request_id=verdict.request_id,
    )


def _call_for(p: AgentPermissionParams, workspace: str) -> Call:
    """How policy sees a hosted agent's action."""
    if p.kind == "command":
        return describe_call("shell", p.args, workspace=workspace, risk="exec")
    if p.kind == "file_change":
        raw: Sequence[Any] = p.args.get("paths") or []
        paths = tuple(normalize_path(str(x)) for x in raw if isinstance(x, str)) or (".",)
        return Call(tool="apply_patch", risk="write", workspace=workspace, paths=paths)
    return Call(tool="agent_permissions", risk="exec", workspace=workspace)


def _refused(task: RunTask, message: str) -> AgentPermissionAnswer:
    if task.cancelled.is_set():
        return AgentPermissionAnswer(decision="cancel", message=message)
    return AgentPermissionAnswer(decision="decline", message=message)


def _not_recorded(kind: str) -> RunEvent:
    return AgentStatus(text=f"(an event of kind {kind[:64]!r} was not recorded)")


def _failed(reason: str, message: str) -> Outcome:
    return Outcome(state="failed", reason=reason, output=message)
