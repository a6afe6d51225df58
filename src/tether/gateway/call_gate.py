"""Policy, then approval, then token: the one path every tool call takes.

:meth:`CallGate.call` decides a run's call with :class:`CallPolicy`. ``deny`` records the
call as refused (no token is minted) and raises ``policy_denied``. ``ask`` opens an
approval that binds the exact plan (tool, workspace, arguments, their hash, and for
shell the parsed commands, cwd and environment additions), puts the run in ``waiting``
and waits for a permitted person; only ``allow_once`` or ``allow_session`` lets the call
go on, with exactly those arguments, and anything else ends it with ``approval_denied``
or ``approval_expired`` (the agent is told that nothing ran). ``allow`` (by rule or by a
person) is recorded with who or what decided, and only then is the token minted and the
call sent (:class:`~tether.gateway.tools.ToolGateway`).

A run resumed after a restart that makes the same call again (same tool, workspace and
argument hash) waits on the request it had opened, under the same call id, instead of
asking twice; a request allowed just before the restart is honoured once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.errors import (
    ApprovalDenied,
    ApprovalExpired,
    CapabilityDenied,
    InvalidParams,
    NotFound,
    PolicyDenied,
    QuestionExpired,
    TetherError,
)
from tether.gateway.auth import Principal
from tether.gateway.authorization import Authorization
from tether.gateway.call_policy import CallPolicy
from tether.gateway.registry import LiveRunner
from tether.gateway.requests import RequestBroker
from tether.gateway.tools import CallOutcome, Progress, ToolGateway, Transfer
from tether.ledger import RequestRecord
from tether.policy import Call, Decision
from tether.protocol.events import (
    ApprovalRequested,
    ApprovalResolved,
    QuestionAnswered,
    QuestionAsked,
    RequestUnseen,
    RunEvent,
    ToolCallDecided,
)
from tether.security.capability import args_digest
from tether.security.redaction import redact, redact_value

__all__ = ["CallGate", "GateRun", "Verdict"]

NOT_RUN = "the call did not run and produced no output"
MAX_QUESTION = 4000
MAX_CHOICES = 20
MAX_CHOICE = 200
"""Bounds on what an agent may ask (it is stored, shown and sent to chats)."""


class GateRun(Protocol):
    """What the gate needs from the run a call belongs to."""

    @property
    def run_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def creator(self) -> str | None: ...

    @property
    def mode(self) -> str: ...

    @property
    def resumed(self) -> bool: ...

    @property
    def cancelled(self) -> asyncio.Event: ...

    @property
    def authorization(self) -> Authorization:
        """What the run may ever use, frozen when it started."""
        ...

    def closes_requests(self) -> bool:
        """True when the run is stopping for good (cancel, timeout), so its requests are
        denied; False while it merely shuts down or lost its lease (they stay open)."""
        ...

    async def record_event(self, event: RunEvent) -> int:
        """Record a gateway event of the run."""
        ...

    async def set_waiting(self, waiting: bool, reason: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a call was let through: by a rule, or by a person's decision."""

    by: str
    rule: str
    request_id: str | None = None
    call_id: str | None = None
    """Set when a resumed run's earlier call id is reused."""
    settled: asyncio.Future[None] | None = field(default=None, compare=False)
    """The run's events about the decision, still being recorded: await it before the
    call's own events (its output, its outcome)."""


class CallGate:
    """See the module docstring."""

    def __init__(self, policy: CallPolicy, requests: RequestBroker, tools: ToolGateway) -> None:
        self.policy = policy
        self.requests = requests
        self.tools = tools

    # ---- runs ----------------------------------------------------------------------

    async def admit(
        self,
        run: GateRun,
        *,
        call_id: str,
        live: LiveRunner,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        announce: Callable[[str], Awaitable[None]],
        call: Call | None = None,
        granted: Verdict | None = None,
    ) -> Verdict:
        """Decide a run's call; return how it was allowed, or raise why not. ``announce``
        records ``tool.call.requested`` (with the call id to use) once it is known to be new.
        ``call``: how policy sees it, when not one of the runner's tools (a hosted agent's
        own action). ``granted``: a decision already made for exactly this action (a hosted
        agent's file write it was allowed to make), which answers what would be asked;
        authorization and policy's denials still apply."""
        call = call or self.policy.describe(tool, args, workspace=workspace, live=live)
        digest = args_digest(args)
        earlier = await self._earlier(run, tool, digest, workspace) if run.resumed else None
        if earlier is not None and earlier.call_id:
            call_id = earlier.call_id  # the resumed run's call: same id, no second prompt
        else:
            earlier = None
            await announce(call_id)
        # the run's authorization first: outside it nothing is asked or decided
        outside = run.authorization.refusal(live.runner_id, tool, workspace)
        if outside is not None:
            if earlier is not None and earlier.is_open:
                await self.requests.close_run(run.run_id, "authorization", request_id=earlier.id)
            await self._refuse(
                run, call_id, live, tool, args, workspace, "authorization", outside,
                code="capability_denied",
            )  # fmt: skip
            raise CapabilityDenied(
                f"{outside}; {NOT_RUN}", data={"call_id": call_id, "reason": "authorization"}
            )
        # policy decides every time, a resumed call too: what it denies now stays denied
        decision = await self.policy.decide(call, session_id=run.session_id, mode=run.mode)
        if decision.decision == "deny":
            if earlier is not None and earlier.is_open:
                await self.requests.close_run(run.run_id, "policy", request_id=earlier.id)
            await self._refuse(run, call_id, live, tool, args, workspace, "rule", decision.rule)
            raise PolicyDenied(
                f"policy denied {tool}: {decision.rule}; {NOT_RUN}",
                data={"call_id": call_id, "rule": decision.rule},
            )
        if earlier is not None and earlier.state == "allowed":
            # allowed while no gateway waited on it (across a restart): the log is made whole
            await self._complete_log(run, earlier, decision.rule)
            verdict = _person(earlier, call_id)
        elif earlier is None and decision.decision == "allow":
            verdict = Verdict(by="rule", rule=decision.rule)
        elif earlier is None and granted is not None:
            verdict = Verdict(by=granted.by, rule=granted.rule, request_id=granted.request_id)
        else:
            if earlier is None:  # ask
                earlier = await self._ask(run, call_id, live, call, args, digest, decision)
            elif not await self._announced(run, earlier, ApprovalRequested.KIND):
                await self._announce_approval(run, earlier, decision.rule)
            return await self._await_approval(run, earlier, call_id, live, call, args)
        await run.record_event(_decided(call_id, "allow", verdict))
        return verdict

    async def _earlier(
        self, run: GateRun, tool: str, digest: str, workspace: str
    ) -> RequestRecord | None:
        """An open (or allowed, never executed) approval of this run for the same call."""
        same = [
            r
            for r in await self.requests.ledger.requests.for_run(run.run_id)
            if r.kind == "approval"
            and r.tool == tool
            and r.args_sha256 == digest
            and r.plan_data().get("workspace") == workspace
        ]
        found = next((r for r in same if r.is_open), None)
        if found is not None:
            return found
        for record in same:
            if record.state == "allowed" and record.call_id:
                try:
                    await self.tools.ledger.tool_calls.get(record.call_id)
                except NotFound:
                    return record
        return None

    async def _ask(
        self,
        run: GateRun,
        call_id: str,
        live: LiveRunner,
        call: Call,
        args: dict[str, Any],
        digest: str,
        decision: Decision,
    ) -> RequestRecord:
        approvers = await self.requests.approvers_for(run.creator)
        record = await self.requests.open(
            kind="approval",
            run_id=run.run_id,
            session_id=run.session_id,
            call_id=call_id,
            summary=_summary(call),
            approvers=approvers,
            created_by=run.creator,
            tool=call.tool,
            args_sha256=digest,
            plan=_plan(live, call, args),
        )
        await self._announce_approval(run, record, decision.rule)
        await self._say_if_unseen(run, record)
        return record

    @staticmethod
    async def _announce_approval(run: GateRun, record: RequestRecord, rule: str) -> None:
        """``approval.requested`` for ``record``, from the plan it binds."""
        plan = record.plan_data()
        await run.record_event(
            ApprovalRequested(
                request=record.id,
                handle=record.handle,
                call_id=record.call_id or "",
                tool=str(plan.get("tool", record.tool or "")),
                runner=str(plan.get("runner", "")),
                workspace=str(plan.get("workspace", "")),
                args=plan.get("args") or {},
                commands=plan.get("commands"),
                cwd=plan.get("cwd"),
                env=plan.get("env", []),
                rule=rule,
                approvers=record.approver_list(),
                expires_at=record.expires_at,
            )
        )

    async def _complete_log(self, run: GateRun, record: RequestRecord, rule: str) -> None:
        """``approval.requested`` and ``approval.resolved`` for a request decided before
        this gateway resumed the run, each unless the log already says it (the gateway
        that opened it may have died before recording either)."""
        if not await self._announced(run, record, ApprovalRequested.KIND):
            await self._announce_approval(run, record, rule)
        if not await self._announced(run, record, ApprovalResolved.KIND):
            await run.record_event(
                ApprovalResolved(
                    request=record.id,
                    handle=record.handle,
                    decision=record.decision,  # type: ignore[arg-type]
                    by=record.decided_by,
                    at=record.decided_at or time.time(),
                )
            )

    async def _announced(self, run: GateRun, record: RequestRecord, kind: str) -> bool:
        """Whether the run's log says ``kind`` for ``record``: a gateway that died between
        opening a request and recording it leaves the record unsaid (read on resume only)."""
        events = await self.tools.ledger.events.read(run.run_id, limit=100_000)
        return any(event.kind == kind and record.id in event.payload for event in events)

    async def _say_if_unseen(self, run: GateRun, record: RequestRecord) -> None:
        if not self.requests.reachable(record.approver_list()):
            await run.record_event(
                RequestUnseen(
                    request=record.id,
                    handle=record.handle,
                    reason="no person who may decide it is connected; it expires "
                    f"in {max(0, round(record.expires_at - time.time()))} s unless one comes",
                )
            )

    async def _await_approval(
        self,
        run: GateRun,
        record: RequestRecord,
        call_id: str,
        live: LiveRunner,
        call: Call,
        args: dict[str, Any],
    ) -> Verdict:
        final = await self._wait(run, record)
        decision = {"allowed": final.decision, "denied": "deny", "expired": "expired"}.get(
            final.state, "cancelled"
        )
        resolved = ApprovalResolved(
            request=final.id,
            handle=final.handle,
            decision=decision,  # type: ignore[arg-type]
            by=final.decided_by,
            at=final.decided_at or time.time(),
        )
        if final.state == "allowed":
            verdict = _person(final, call_id)

            async def settle() -> None:
                await run.record_event(resolved)
                await self._resume(run)
                if final.decision == "allow_session":
                    await self.policy.allow_for_session(
                        run.session_id, call, by=final.decided_by or "", request_id=final.id
                    )
                await run.record_event(_decided(call_id, "allow", verdict))

            # the run's bookkeeping is recorded while the call is dispatched (its ledger
            # row, with who allowed it, is still committed before it is sent)
            return Verdict(
                by=verdict.by,
                rule=verdict.rule,
                request_id=verdict.request_id,
                call_id=call_id,
                settled=asyncio.ensure_future(settle()),
            )
        await run.record_event(resolved)
        await self._resume(run)
        by = final.decided_by or "nobody"
        if final.state == "expired":
            rule = f"request {final.handle} expired before anyone decided"
            error: TetherError = ApprovalExpired(
                f"{rule}; {NOT_RUN}", data={"call_id": call_id, "request": final.id}
            )
        elif final.state == "denied":
            rule = f"denied by {by} (request {final.handle})"
            error = ApprovalDenied(
                f"{rule}; {NOT_RUN}", data={"call_id": call_id, "request": final.id}
            )
        else:
            rule = f"request {final.handle} was closed: the run is stopping"
            error = ApprovalDenied(
                f"{rule}; {NOT_RUN}", data={"call_id": call_id, "request": final.id}
            )
        await self._refuse(
            run, call_id, live, call.tool, args, call.workspace, by, rule, request_id=final.id
        )
        raise error

    async def _wait(self, run: GateRun, record: RequestRecord) -> RequestRecord:
        """Hold the run in ``waiting`` until the request ends; the caller records how it
        ended and moves the run back to ``running``."""
        await run.set_waiting(True, "approval" if record.kind == "approval" else "question")
        while True:
            final = await self.requests.wait(record, run.cancelled)
            if not final.is_open:
                return final
            if run.closes_requests():
                await self.requests.close_run(run.run_id, "run.cancel")
                return await self.requests.ledger.requests.get(record.id)
            await asyncio.Event().wait()  # shutting down: the task is cancelled soon

    @staticmethod
    async def _resume(run: GateRun) -> None:
        if not run.cancelled.is_set():
            await run.set_waiting(False, "decided")

    async def _refuse(
        self,
        run: GateRun | None,
        call_id: str,
        live: LiveRunner,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        by: str,
        rule: str,
        *,
        request_id: str | None = None,
        requested_by: str | None = None,
        code: str | None = None,
    ) -> None:
        await self.tools.refuse(
            call_id=call_id,
            run_id=run.run_id if run is not None else "",
            runner_id=live.runner_id,
            tool=tool,
            args=args,
            workspace=workspace,
            requested_by=run.creator if run is not None else requested_by,
            decided_by=by,
            rule=rule,
            request_id=request_id,
            code=code or ("policy_denied" if by == "rule" else "approval_denied"),
        )
        if run is not None:
            await run.record_event(
                ToolCallDecided(call_id=call_id, decision="deny", by=by, rule=rule)
            )

    # ---- questions -----------------------------------------------------------------

    async def question(
        self, run: GateRun, text: str, choices: list[str], timeout: float | None
    ) -> str:
        """Ask the run's people a question; returns the answer or raises why there is none."""
        if not text.strip() or len(text) > MAX_QUESTION:
            raise InvalidParams(f"a question has 1 to {MAX_QUESTION} characters")
        if len(choices) > MAX_CHOICES or any(not c or len(c) > MAX_CHOICE for c in choices):
            raise InvalidParams(
                f"a question offers at most {MAX_CHOICES} choices of 1 to {MAX_CHOICE} characters"
            )
        record = None
        stored = redact(text)  # the ledger keeps it redacted, as every event
        if run.resumed:
            record = await self.requests.ledger.requests.open_question(run.run_id, stored)
            if record is not None and not await self._announced(run, record, QuestionAsked.KIND):
                await self._announce_question(run, record, text, choices)
        if record is None:
            approvers = await self.requests.approvers_for(run.creator)
            record = await self.requests.open(
                kind="question",
                run_id=run.run_id,
                session_id=run.session_id,
                call_id=None,
                summary=stored,
                approvers=approvers,
                created_by=run.creator,
                choices=[redact(c) for c in choices],
                timeout=timeout,
            )
            await self._announce_question(run, record, text, choices)
            await self._say_if_unseen(run, record)
        final = await self._wait(run, record)
        decision = {"answered": "answer", "expired": "expired"}.get(final.state, "cancelled")
        await run.record_event(
            QuestionAnswered(
                request=final.id,
                handle=final.handle,
                decision=decision,  # type: ignore[arg-type]
                answer=final.answer,
                by=final.decided_by,
                at=final.decided_at or time.time(),
            )
        )
        await self._resume(run)
        if final.state == "answered" and final.answer is not None:
            return final.answer
        if final.state == "expired":
            raise QuestionExpired(
                f"nobody answered question {final.handle} in time", data={"request": final.id}
            )
        raise ApprovalDenied(
            f"question {final.handle} was closed: the run is stopping", data={"request": final.id}
        )

    @staticmethod
    async def _announce_question(
        run: GateRun, record: RequestRecord, text: str, choices: list[str]
    ) -> None:
        await run.record_event(
            QuestionAsked(
                request=record.id,
                handle=record.handle,
                question=text,
                choices=choices,
                approvers=record.approver_list(),
                expires_at=record.expires_at,
            )
        )

    # ---- direct calls (tool.call) ----------------------------------------------------

    async def direct(
        self,
        principal: Principal,
        *,
        live: LiveRunner,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        timeout: float,
        ask: bool,
        call_id: str,
        progress: Progress | None = None,
        transfer: Transfer | None = None,
    ) -> CallOutcome:
        """A call an owner makes by hand (or tether makes for a person: a file they sent
        or asked for, with its ``transfer``). Policy still decides: the deny list and deny
        rules refuse it; ``ask`` counts as allowed by the caller, who is a permitted
        person typing the call, unless ``ask`` is set, which opens a real request."""
        call = self.policy.describe(tool, args, workspace=workspace, live=live)
        decision = await self.policy.decide(call, session_id=None, mode="auto-read")
        if decision.decision == "deny":
            await self._refuse(
                None,
                call_id,
                live,
                tool,
                args,
                workspace,
                "rule",
                decision.rule,
                requested_by=principal.id,
            )
            raise PolicyDenied(
                f"policy denied {tool}: {decision.rule}; {NOT_RUN}",
                data={"call_id": call_id, "rule": decision.rule},
            )
        verdict = Verdict(by="rule", rule=decision.rule)
        if ask:
            record = await self.requests.open(
                kind="approval",
                run_id=None,
                session_id=None,
                call_id=call_id,
                summary=_summary(call),
                approvers=[principal.id],
                created_by=principal.id,
                tool=tool,
                args_sha256=args_digest(args),
                plan=_plan(live, call, args),
            )
            final = await self.requests.wait(record)
            if final.state != "allowed":
                by = final.decided_by or "nobody"
                rule = f"request {final.handle} {final.state}"
                await self._refuse(
                    None,
                    call_id,
                    live,
                    tool,
                    args,
                    workspace,
                    by,
                    rule,
                    request_id=final.id,
                    requested_by=principal.id,
                )
                cls = ApprovalExpired if final.state == "expired" else ApprovalDenied
                raise cls(f"{rule}; {NOT_RUN}", data={"call_id": call_id, "request": final.id})
            verdict = _person(final, call_id)
        elif decision.decision == "ask":
            verdict = Verdict(by=principal.id, rule=f"called by hand by {principal.id}")
        return await self.tools.execute(
            call_id=call_id,
            runner_id=live.runner_id,
            tool=tool,
            args=args,
            workspace=workspace,
            timeout=timeout,
            requested_by=principal.id,
            decided_by=verdict.by,
            rule=verdict.rule,
            request_id=verdict.request_id,
            progress=progress,
            transfer=transfer,
        )


def _person(record: RequestRecord, call_id: str) -> Verdict:
    by = record.decided_by or ""
    return Verdict(
        by=by,
        rule=f"{record.decision} by {by} (request {record.handle})",
        request_id=record.id,
        call_id=call_id,
    )


def _decided(call_id: str, decision: str, verdict: Verdict) -> ToolCallDecided:
    return ToolCallDecided(
        call_id=call_id,
        decision="allow" if decision == "allow" else "deny",
        by=verdict.by,
        rule=verdict.rule,
    )


def _plan(live: LiveRunner, call: Call, args: dict[str, Any]) -> dict[str, Any]:
    """What exactly would run, as the request shows and binds it."""
    plan: dict[str, Any] = {
        "tool": call.tool,
        "runner": live.name,
        "workspace": call.workspace,
        "risk": call.risk,
        "args": redact_value(args),
        "paths": list(call.paths),
    }
    if call.command is not None:
        plan["commands"] = [c.text for c in call.commands] if call.commands is not None else None
        plan["cwd"] = args.get("cwd") or "."
        plan["env"] = sorted({name for c in (call.commands or ()) for name in c.env})
    return plan


def _summary(call: Call) -> str:
    if call.command is not None:
        text = call.command if len(call.command) <= 200 else call.command[:199] + "…"
        return f"{call.tool} in {call.workspace}: {redact_value(text)}"
    where = ", ".join(call.paths) or "-"
    return f"{call.tool} in {call.workspace}: {where}"
