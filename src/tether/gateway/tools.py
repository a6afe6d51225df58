"""The tool gateway: one tool call to one runner under a fresh capability token.

Every call is recorded in the ledger (``tool_calls``: token id, decision, outcome)
before it is sent, then sent through the :class:`~tether.gateway.runner_link.RunnerLink`
with its call id as the key: a runner that is not connected fails it at once with
``runner_offline``, and a dropped connection is survived by the link's exactly-once
re-send to the same runner process (or fails ``runner_offline`` well before the call's
own deadline). A call that runs past its deadline is cancelled on the runner.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tether.config import Limits
from tether.errors import (
    InvalidParams,
    NotFound,
    Overloaded,
    RequestTimeout,
    RunnerOffline,
    TetherError,
    ToolTimeout,
)
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.gateway.runner_link import RunnerLink
from tether.ledger import Ledger
from tether.protocol.methods import TOOL_CANCEL, TOOL_EXECUTE
from tether.protocol.runners import ToolCancelParams, ToolExecuteParams, ToolOutput
from tether.security.capability import CapabilityIssuer, args_digest, new_token_id
from tether.security.redaction import redact, redact_json, redact_value
from tether.types import new_id

__all__ = ["CallOutcome", "Progress", "ToolGateway", "Transfer"]

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]
_SLACK = 5.0
"""Seconds the gateway waits beyond a call's own timeout (the runner enforces the timeout)."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    call_id: str
    runner_id: str
    result: msgspec.Raw
    duration: float


@dataclass(slots=True)
class Transfer:
    """The file one ``put_file`` or ``get_file`` call moves (``file.pull``/``file.push``).

    Only a call the gateway itself makes with a transfer can move bytes: an agent's
    ``put_file`` has nothing to pull and its ``get_file`` nowhere to push."""

    source: bytes | None = None
    """``put_file``: the bytes the runner pulls."""
    limit: int = 0
    """``get_file``: the most bytes taken."""
    received: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _Active:
    runner_id: str
    progress: Progress | None
    transfer: Transfer | None = None


class ToolGateway:
    """Executes tool calls on runners. See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        registry: RunnerRegistry,
        link: RunnerLink,
        issuer: CapabilityIssuer,
        limits: Limits,
    ) -> None:
        self.ledger = ledger
        self.registry = registry
        self.link = link
        self.issuer = issuer
        self.limits = limits
        self.active: dict[str, _Active] = {}
        self.inflight: collections.Counter[str] = collections.Counter()
        """Calls in flight per runner id."""
        self._cancels: set[asyncio.Task[None]] = set()

    def progress(self, runner_id: str | None, call_id: str, stream: str, text: str) -> None:
        """Route a ``tool.progress`` notification to the call's listener (own calls only)."""
        active = self.active.get(call_id)
        if active is None or active.runner_id != runner_id:
            return
        if active.progress is not None:
            active.progress(stream, text)

    async def live(self, runner: str, *, wait: float = 0.0) -> LiveRunner:
        """The connected runner called ``runner`` (name or id): ``runner_offline`` for a
        known one that is not connected (the ledger is read only then) after waiting up to
        ``wait`` seconds for it to reconnect, ``not_found`` for an unknown one."""
        live = self.registry.find(runner)
        if live is None:
            record = await self.ledger.runners.find(runner)
            if wait > 0:
                live = await self.registry.wait_back(record.id, wait)
            if live is None:
                seen = "never connected" if record.last_seen_at is None else "offline"
                raise RunnerOffline(
                    f"runner {record.name} is not connected ({seen}): start it on its machine "
                    "with `tether runner` (or `tether up` for this one); `tether runners list` "
                    "shows when it was last seen",
                    data={"runner": record.name},
                )
        return live

    async def target(
        self, runner: str, workspace: str = "", *, wait: float = 0.0
    ) -> tuple[LiveRunner, str]:
        """:meth:`live` and the workspace to use: the one given, else the runner's only
        one (``invalid_params`` when it must be named)."""
        live = await self.live(runner, wait=wait)
        if not workspace:
            if len(live.workspaces) != 1:
                known = ", ".join(live.workspaces) or "none"
                raise InvalidParams(
                    f"say which workspace (runner {live.name} has: {known})",
                    data={"field": "params.workspace"},
                )
            workspace = live.workspaces[0]
        return live, workspace

    async def execute(
        self,
        *,
        runner_id: str,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        timeout: float,
        run_id: str = "",
        requested_by: str | None = None,
        decided_by: str | None = None,
        rule: str | None = None,
        request_id: str | None = None,
        progress: Progress | None = None,
        call_id: str | None = None,
        transfer: Transfer | None = None,
    ) -> CallOutcome:
        """Run a call that policy (or a person) allowed: record it with who or what
        decided, mint its token, send it, record the outcome."""
        live = self._check(runner_id, tool, workspace)
        call_id = call_id or new_id("call")
        with self._slot(runner_id):
            token_id, digest = new_token_id(), args_digest(args)
            # The call is committed to the ledger before anything is sent; the token is
            # signed while the ledger's writer commits (one step yields so it is queued).
            recorded = asyncio.ensure_future(
                self.ledger.tool_calls.create(
                    call_id=call_id,
                    run_id=run_id or None,
                    runner_id=runner_id,
                    tool=tool,
                    args=msgspec.json.encode(redact_value(args)).decode(),
                    args_sha256=digest,
                    workspace=workspace,
                    decision="allow",
                    token_id=token_id,
                    requested_by=requested_by,
                    decided_by=decided_by,
                    rule=rule,
                    request_id=request_id,
                )
            )
            try:
                await asyncio.sleep(0)
                token, _cap = self.issuer.mint(
                    runner_id=runner_id,
                    call_id=call_id,
                    tool=tool,
                    args=args,
                    workspace=workspace,
                    run_id=run_id,
                    ttl=int(max(30, min(timeout, 300))),
                    token_id=token_id,
                    args_sha256=digest,
                )
            finally:
                await recorded
            params = ToolExecuteParams(
                call_id=call_id,
                tool=tool,
                args=args,
                workspace=workspace,
                token=token,
                timeout=timeout,
                run_id=run_id,
            )
            self.active[call_id] = _Active(runner_id, progress, transfer)
            start = time.monotonic()
            try:
                output = await self._send(live, params, deadline=start + timeout + _SLACK)
            except TetherError as exc:
                state = {"tool_timeout": "timeout", "timeout": "timeout"}.get(exc.code, "failed")
                await self.ledger.tool_calls.finish(
                    call_id, state=state, error_code=exc.code, error=redact(exc.message)
                )
                raise
            except asyncio.CancelledError:
                # the caller is gone (a run stopped hard, a shutdown): the call is cancelled
                # on the runner, and its record says so rather than staying "dispatched"
                self._cancel_on(runner_id, call_id)
                await asyncio.shield(
                    self.ledger.tool_calls.finish(
                        call_id,
                        state="cancelled",
                        error_code="cancelled",
                        error="the caller stopped",
                    )
                )
                raise
            finally:
                self.active.pop(call_id, None)
            # the ledger gets the result redacted as data (still valid JSON); the caller
            # gets it as the runner sent it
            await self.ledger.tool_calls.finish(
                call_id, state="succeeded", result=redact_json(bytes(output.result))
            )
            return CallOutcome(call_id, runner_id, output.result, output.duration)

    async def refuse(
        self,
        *,
        call_id: str,
        run_id: str,
        runner_id: str,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        requested_by: str | None,
        decided_by: str,
        rule: str,
        request_id: str | None = None,
        code: str = "policy_denied",
    ) -> None:
        """Record a call that was refused (``code``: why): no token, nothing sent."""
        await self.ledger.tool_calls.create(
            call_id=call_id,
            run_id=run_id or None,
            runner_id=runner_id,
            tool=tool,
            args=msgspec.json.encode(redact_value(args)).decode(),
            args_sha256=args_digest(args),
            workspace=workspace,
            decision="deny",
            token_id=None,
            requested_by=requested_by,
            decided_by=decided_by,
            rule=redact(rule),
            request_id=request_id,
            state="denied",
            error_code=code,
            error=redact(rule),
        )

    async def record_hosted(
        self,
        *,
        call_id: str,
        run_id: str,
        runner_id: str,
        tool: str,
        args: dict[str, Any],
        workspace: str,
        requested_by: str | None,
        decided_by: str,
        rule: str,
        request_id: str | None = None,
    ) -> None:
        """Record a hosted agent's action that policy (or a person) allowed: the agent runs
        it itself, so no token is minted; its outcome is recorded when the agent reports it."""
        await self.ledger.tool_calls.create(
            call_id=call_id,
            run_id=run_id or None,
            runner_id=runner_id,
            tool=tool,
            args=msgspec.json.encode(redact_value(args)).decode(),
            args_sha256=args_digest(args),
            workspace=workspace,
            decision="allow",
            token_id=None,
            requested_by=requested_by,
            decided_by=decided_by,
            rule=redact(rule),
            request_id=request_id,
        )

    @contextlib.contextmanager
    def _slot(self, runner_id: str) -> Iterator[None]:
        """Count a call in flight on a runner. Taken before the call's first await, so
        concurrent calls cannot all pass the check; kept per runner id, so a reconnect
        does not reset it."""
        self.inflight[runner_id] += 1
        try:
            yield
        finally:
            left = self.inflight[runner_id] - 1
            if left > 0:
                self.inflight[runner_id] = left
            else:
                del self.inflight[runner_id]

    def _check(self, runner_id: str, tool: str, workspace: str) -> LiveRunner:
        live = self.registry.get(runner_id)
        if live is None:
            raise RunnerOffline(
                f"runner {runner_id} is not connected", data={"runner_id": runner_id}
            )
        if tool not in live.tools:
            raise NotFound(
                f"runner {live.name} does not offer the tool {tool!r}", data={"tool": tool}
            )
        if workspace not in live.workspaces:
            known = ", ".join(live.workspaces) or "none"
            raise InvalidParams(
                f"runner {live.name} has no workspace {workspace!r} (it has: {known})",
                data={"field": "params.workspace"},
            )
        running = self.inflight[runner_id]
        if running >= live.max_concurrency:
            raise Overloaded(
                f"runner {live.name} already runs {running} calls (its limit)",
                data={"runner_id": runner_id},
            )
        return live

    async def _send(
        self, live: LiveRunner, params: ToolExecuteParams, *, deadline: float
    ) -> ToolOutput:
        try:
            return await self.link.call(
                live.runner_id, TOOL_EXECUTE, params, deadline=deadline, call_key=params.call_id
            )
        except RequestTimeout as exc:
            self._cancel_on(live.runner_id, params.call_id)
            raise ToolTimeout(
                f"{params.tool} did not finish in time", data={"call_id": params.call_id}
            ) from exc

    async def cancel(self, call_id: str) -> bool:
        """Ask the runner to stop a call (it kills the process group); False if not active."""
        active = self.active.get(call_id)
        if active is None or self.registry.get(active.runner_id) is None:
            return False
        self._cancel_on(active.runner_id, call_id)
        return True

    def _cancel_on(self, runner_id: str, call_id: str) -> None:
        async def send() -> None:
            try:
                await self.link.call(
                    runner_id,
                    TOOL_CANCEL,
                    ToolCancelParams(call_id=call_id),
                    deadline=time.monotonic() + 5,
                )
            except TetherError as exc:
                log.info("cancel not delivered", extra={"call_id": call_id, "error": exc.message})

        task = asyncio.get_running_loop().create_task(send(), name=f"tool:{call_id}:cancel")
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)
