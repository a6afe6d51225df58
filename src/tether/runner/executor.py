"""Executing ``tool.execute`` on the runner: verify, check local policy, run, remember.

Order of checks for a new call: the capability token (signature, audience, expiry,
replay, call/tool/arguments/workspace binding) -> the workspace is one of this runner's
-> the params parse -> every path param resolves inside the token's allowed paths and
the workspace, outside the denied paths -> capacity. Any failure raises and nothing runs.

Outcomes of recent calls are kept by call id: a call id the runner has seen is never
run again; the gateway's re-send after a reconnect attaches to the running call or gets
its recorded outcome.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from tether.config import RunnerConfig
from tether.errors import (
    CapabilityDenied,
    NotFound,
    Overloaded,
    PolicyDenied,
    TetherError,
    ToolFailed,
)
from tether.protocol.runners import ToolExecuteParams, ToolOutput
from tether.runner.sandbox import SandboxInfo
from tether.runner.tools.base import ToolContext
from tether.runner.tools.registry import TOOLS
from tether.security.capability import CapabilityVerifier
from tether.security.paths import PathPolicy

__all__ = ["CallExecutor"]

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, str, str], None]
"""(call_id, stream, text) -> None."""

_KEEP_SECONDS = 600.0
_KEEP_MAX = 10_000
_POLICY_TTL = 5.0


@dataclass
class _Call:
    token_id: str
    task: asyncio.Task[ToolOutput]
    finished_at: float | None = None


@dataclass
class CallExecutor:
    config: RunnerConfig
    workspaces: dict[str, Path]
    verifier: CapabilityVerifier
    sandbox: SandboxInfo
    home: Path = field(default_factory=Path.home)
    progress: ProgressSink | None = None
    draining: bool = False
    calls: collections.OrderedDict[str, _Call] = field(default_factory=collections.OrderedDict)

    running: int = 0
    _policies: dict[tuple[str, tuple[str, ...]], tuple[float, PathPolicy]] = field(
        default_factory=dict
    )

    @property
    def inflight(self) -> int:
        return self.running

    async def execute(self, p: ToolExecuteParams) -> ToolOutput:
        known = self.calls.get(p.call_id)
        if known is not None:
            if not p.resend:
                raise CapabilityDenied(
                    f"call {p.call_id} was already received; a copy is a replay",
                    data={"reason": "replayed"},
                )
            cap = self.verifier.verify(
                p.token,
                call_id=p.call_id,
                tool=p.tool,
                args=p.args,
                workspace=p.workspace,
                resend=True,
            )
            if cap.token_id != known.token_id:
                raise ToolFailed(
                    "this call id was already used with another token",
                    data={"reason": "duplicate_call"},
                )
            log.info("attaching to a call seen before", extra={"call_id": p.call_id})
            return await asyncio.shield(known.task)
        if p.resend:
            raise ToolFailed(
                "this runner does not know the call (it restarted); it is not run again",
                data={"reason": "unknown_call"},
            )
        cap = self.verifier.verify(
            p.token, call_id=p.call_id, tool=p.tool, args=p.args, workspace=p.workspace
        )
        spec = TOOLS.get(p.tool)
        if spec is None:
            raise NotFound(f"this runner has no tool {p.tool!r}", data={"tool": p.tool})
        root = self.workspaces.get(p.workspace)
        if root is None:
            raise PolicyDenied(
                f"workspace {p.workspace!r} is not configured on this runner",
                data={"reason": "unknown_workspace", "workspace": p.workspace},
            )
        params = spec.parse(p.args)
        policy = self._policy(p.workspace, root, cap.paths)
        policy.check_root()
        for name in spec.path_params:
            value = getattr(params, name, None)
            if isinstance(value, str):
                policy.resolve(value)
        if self.draining:
            raise Overloaded("this runner is shutting down")
        if self.inflight >= self.config.max_concurrency:
            raise Overloaded(f"this runner already runs {self.config.max_concurrency} calls")
        timeout = min(p.timeout, self.config.max_timeout)
        sink = self.progress
        ctx = ToolContext(
            policy=policy,
            config=self.config,
            timeout=timeout,
            progress=(lambda stream, text: sink(p.call_id, stream, text))
            if sink is not None
            else None,
            sandbox=self.sandbox,
        )
        task = asyncio.get_running_loop().create_task(
            self._run(p, spec.run, ctx, params), name=f"call:{p.call_id}"
        )
        call = _Call(cap.token_id, task)
        self.calls[p.call_id] = call
        self.running += 1
        task.add_done_callback(lambda _t: self._ended(call))
        self._prune()
        return await asyncio.shield(task)

    async def _run(
        self,
        p: ToolExecuteParams,
        run: Callable[[ToolContext, Any], Awaitable[msgspec.Struct]],
        ctx: ToolContext,
        params: Any,
    ) -> ToolOutput:
        start = time.monotonic()
        log.info("> tool call", extra={"call_id": p.call_id, "tool": p.tool, "run_id": p.run_id})
        try:
            result = await run(ctx, params)
        except asyncio.CancelledError:
            log.info("! tool call cancelled", extra={"call_id": p.call_id})
            raise ToolFailed("the call was cancelled", data={"reason": "cancelled"}) from None
        except TetherError as exc:
            log.info("! tool call failed", extra={"call_id": p.call_id, "code": exc.code})
            raise
        duration = time.monotonic() - start
        log.info("< tool call done", extra={"call_id": p.call_id, "seconds": round(duration, 3)})
        return ToolOutput(
            call_id=p.call_id, result=msgspec.Raw(msgspec.json.encode(result)), duration=duration
        )

    def _ended(self, call: _Call) -> None:
        call.finished_at = time.monotonic()
        self.running -= 1

    def _policy(self, workspace: str, root: Path, paths: tuple[str, ...]) -> PathPolicy:
        """The path policy for a workspace and a token's allowed paths, rebuilt every few
        seconds (it resolves the root and denied paths, which costs a few syscalls).
        Every argument path is still resolved per call; only the roots are cached."""
        key = (workspace, paths)
        now = time.monotonic()
        cached = self._policies.get(key)
        if cached is not None and now - cached[0] < _POLICY_TTL:
            return cached[1]
        allowed = [root if part in ("", ".") else root / part for part in paths]
        policy = PathPolicy(
            root, denied=self.config.denied_paths, allowed_roots=allowed, home=self.home
        )
        if len(self._policies) > 256:
            self._policies.clear()
        self._policies[key] = (now, policy)
        return policy

    def cancel(self, call_id: str) -> bool:
        call = self.calls.get(call_id)
        if call is None or call.task.done():
            return False
        call.task.cancel()
        return True

    def _prune(self) -> None:
        now = time.monotonic()
        while self.calls:
            call_id, oldest = next(iter(self.calls.items()))
            old = oldest.finished_at is not None and now - oldest.finished_at > _KEEP_SECONDS
            if not (old or (len(self.calls) > _KEEP_MAX and oldest.task.done())):
                break
            del self.calls[call_id]

    async def drain(self, grace: float) -> None:
        """Stop taking calls; wait up to ``grace`` for running ones, then cancel the rest."""
        self.draining = True
        running = [c.task for c in self.calls.values() if not c.task.done()]
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
