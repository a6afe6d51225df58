"""The request broker: approvals and questions opened, waited on, and decided once.

A run (or a direct ``tool.call --ask``) opens a request in the ledger and waits. A
person resolves it with ``request.resolve``: only someone permitted (an owner, the
run's creator, or an approver the config names), only while it is open and unexpired,
by a compare-and-set, so exactly one decision wins and a second gets ``conflict``. The
resolving gateway wakes a waiter it holds at once; a waiter on another gateway (shared
PostgreSQL) sees the decision on its next poll. A waiter whose request passes its
expiry marks it ``expired`` itself; the orchestrator's reap pass expires the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from tether.config import PolicyConfig
from tether.errors import Forbidden, InvalidParams, NotFound
from tether.gateway.auth import Principal
from tether.ledger import Ledger, RequestRecord
from tether.protocol.access import RequestInfo
from tether.security.redaction import redact

__all__ = ["RequestBroker", "request_info"]

log = logging.getLogger(__name__)

POLL = 1.0
"""Seconds between ledger reads while waiting (decisions made on another gateway)."""


def request_info(record: RequestRecord) -> RequestInfo:
    return RequestInfo(
        id=record.id,
        handle=record.handle,
        kind="question" if record.kind == "question" else "approval",
        state=record.state,
        run_id=record.run_id,
        session_id=record.session_id,
        call_id=record.call_id,
        summary=record.summary,
        plan=record.plan_data(),
        choices=record.choice_list(),
        approvers=record.approver_list(),
        created_by=record.created_by,
        created_at=record.created_at,
        expires_at=record.expires_at,
        decision=record.decision,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        answer=record.answer,
    )


class RequestBroker:
    """See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        config: PolicyConfig,
        *,
        connected: Callable[[], Iterable[Principal]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.connected = connected
        """The people connected now (to say when no approver can see a request)."""
        self.clock = clock
        self._wakers: dict[str, asyncio.Event] = {}
        self._decided: dict[str, RequestRecord] = {}
        """Requests this gateway resolved, handed to their local waiter without a read."""
        self._waiting: dict[str, RequestRecord] = {}
        """Requests waited on here, as opened: who may decide them never changes, so a
        decision needs no read before its compare-and-set (which checks the state)."""

    # ---- who decides ---------------------------------------------------------------

    async def approvers_for(self, creator: str | None) -> list[str]:
        """The run's creator, then the config's approvers (users by id, ``role:NAME``)."""
        out = [creator] if creator else []
        for entry in self.config.approvers:
            if entry.startswith("role:"):
                out.append(entry)
                continue
            try:
                out.append((await self.ledger.users.find(entry)).id)
            except NotFound:
                log.warning("! policy.approvers names no user; skipped", extra={"user": entry})
        return list(dict.fromkeys(out))

    @staticmethod
    def may_decide(principal: Principal, record: RequestRecord) -> bool:
        if principal.is_owner:
            return True
        approvers = record.approver_list()
        return principal.id in approvers or f"role:{principal.user_role}" in approvers

    def reachable(self, approvers: Sequence[str]) -> bool:
        """Is anyone who may decide a request with these approvers connected?"""
        for p in self.connected():
            if p.user_role is None:
                continue
            if p.is_owner or p.id in approvers or f"role:{p.user_role}" in approvers:
                return True
        return False

    # ---- open and wait -------------------------------------------------------------

    async def open(
        self,
        *,
        kind: str,
        run_id: str | None,
        session_id: str | None,
        call_id: str | None,
        summary: str,
        approvers: Sequence[str],
        created_by: str | None,
        tool: str | None = None,
        args_sha256: str | None = None,
        plan: dict[str, Any] | None = None,
        choices: Sequence[str] = (),
        timeout: float | None = None,
    ) -> RequestRecord:
        if timeout is None:
            timeout = (
                self.config.question_timeout if kind == "question" else self.config.approval_timeout
            )
        now = self.clock()
        record = await self.ledger.requests.create(
            kind=kind,
            run_id=run_id,
            session_id=session_id,
            call_id=call_id,
            summary=summary,
            approvers=approvers,
            expires_at=now + timeout,
            created_by=created_by,
            tool=tool,
            args_sha256=args_sha256,
            plan=plan,
            choices=choices,
            now=now,
        )
        log.info(
            "request opened",
            extra={"request": record.id, "handle": record.handle, "run_id": run_id, "kind": kind},
        )
        return record

    async def wait(self, record: RequestRecord, stop: asyncio.Event | None = None) -> RequestRecord:
        """Wait until the request is no longer open (decided, expired or closed) and
        return it as it ended; returns the open record if ``stop`` is set first."""
        waker = self._wakers.setdefault(record.id, asyncio.Event())
        self._waiting[record.id] = record
        try:
            while True:
                decided = self._decided.pop(record.id, None)
                current = decided or await self.ledger.requests.get(record.id)
                if not current.is_open:
                    return current
                remaining = current.expires_at - self.clock()
                if remaining <= 0:
                    await self.ledger.requests.expire_due(self.clock())
                    continue
                if stop is not None and stop.is_set():
                    return current
                waits = [asyncio.ensure_future(waker.wait())]
                if stop is not None:
                    waits.append(asyncio.ensure_future(stop.wait()))
                try:
                    await asyncio.wait(
                        waits, timeout=min(remaining, POLL), return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for w in waits:
                        w.cancel()
                waker.clear()
        finally:
            if self._wakers.get(record.id) is waker:
                del self._wakers[record.id]
                self._waiting.pop(record.id, None)
            self._decided.pop(record.id, None)

    def _wake(self, request_id: str, record: RequestRecord | None = None) -> None:
        waker = self._wakers.get(request_id)
        if waker is not None:
            if record is not None:
                self._decided[request_id] = record
            waker.set()

    # ---- decide --------------------------------------------------------------------

    async def find(self, principal: Principal, ref: str) -> RequestRecord:
        """A request by id or handle, as ``principal`` may see it (else ``not_found``)."""
        local = self._waiting.get(ref)
        if local is not None:
            candidates = [local]
        elif ref.startswith("req_"):
            try:
                record = await self.ledger.requests.get(ref)
            except NotFound:
                record = None
            candidates = [record] if record is not None else []
        else:
            candidates = await self.ledger.requests.by_handle(ref)
        visible = [r for r in candidates if await self.visible(principal, r)]
        if not visible:
            raise NotFound(f"no request {ref!r}", data={"request": ref})
        if len(visible) > 1:
            raise InvalidParams(
                f"the handle {ref!r} names {len(visible)} open requests; use the request id",
                data={"field": "params.request"},
            )
        return visible[0]

    async def visible(self, principal: Principal, record: RequestRecord) -> bool:
        """Owners see every request; others those they may decide or whose session is theirs."""
        if self.may_decide(principal, record):
            return True
        if record.session_id is None:
            return False
        try:
            session = await self.ledger.sessions.get(record.session_id)
        except NotFound:
            return False
        return session.created_by == principal.id

    async def resolve(
        self,
        principal: Principal,
        ref: str,
        *,
        decision: str | None,
        answer: str | None,
    ) -> RequestRecord:
        record = await self.find(principal, ref)
        if not self.may_decide(principal, record):
            raise Forbidden(
                f"you may not decide request {record.handle}", data={"request": record.id}
            )
        if record.kind == "question":
            if answer is None:
                raise InvalidParams(
                    "a question needs an answer, not a decision", data={"field": "params.answer"}
                )
            choices = record.choice_list()
            if choices and answer not in choices:
                raise InvalidParams(
                    f"answer with one of: {', '.join(choices)}", data={"field": "params.answer"}
                )
            state, decided = "answered", "answer"
        else:
            if decision is None:
                raise InvalidParams(
                    "an approval needs a decision: allow_once, allow_session or deny",
                    data={"field": "params.decision"},
                )
            if decision == "allow_session" and record.session_id is None:
                raise InvalidParams(
                    "this call belongs to no session; allow it once instead",
                    data={"field": "params.decision"},
                )
            state = "denied" if decision == "deny" else "allowed"
            decided, answer = decision, None
        # the ledger keeps the answer redacted; a waiter on this gateway gets it as typed
        resolved = await self.ledger.requests.resolve(
            record.id,
            state=state,
            decision=decided,
            by=principal.id,
            answer=redact(answer) if answer is not None else None,
            now=self.clock(),
            known=record,
        )
        log.info(
            "request resolved",
            extra={"request": record.id, "decision": decided, "by": principal.id},
        )
        self._wake(record.id, msgspec.structs.replace(resolved, answer=answer))
        return resolved

    async def list_for(
        self, principal: Principal, *, run_id: str | None = None, session_id: str | None = None
    ) -> list[RequestRecord]:
        """Open requests ``principal`` may decide."""
        out = []
        for record in await self.ledger.requests.open(run_id=run_id):
            if session_id is not None and record.session_id != session_id:
                continue
            if self.may_decide(principal, record):
                out.append(record)
        return out

    async def close_run(
        self, run_id: str, by: str, *, request_id: str | None = None
    ) -> list[RequestRecord]:
        """Deny what a run that ends or is cancelled still waits for (or one request)."""
        closed = await self.ledger.requests.close_for_run(
            run_id, by=by, now=self.clock(), request_id=request_id
        )
        for record in closed:
            self._wake(record.id, record)
        return closed
