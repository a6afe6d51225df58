"""Executing ``tool.execute`` on the runner: verify, check local policy, run, remember.

Order of checks for a new call: the capability token (signature, audience, expiry,
replay, call/tool/arguments/workspace binding) -> the workspace is one of this runner's
-> the params parse -> every path param names a place inside the token's allowed paths
and the workspace, outside protected paths -> capacity. Any failure raises and nothing
runs. The tool then opens every path through :class:`~tether.runner.fs.WorkspaceFS`,
which also refuses a workspace root that is no longer the directory it was at start.

Outcomes of recent calls are kept by call id: a call id the runner has seen is never
run again; the gateway's re-send after a reconnect attaches to the running call or gets
its recorded outcome. Outcomes are kept for ten minutes within
``runner.outcome_cache_bytes``; past that the oldest are forgotten (the call id is still
remembered, so it is still never run twice). Every result is cut to fit the gateway's
frame limit before it is sent (:mod:`tether.runner.tools.fit`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
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
from tether.runner.fs import WorkspaceFS
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import SandboxInfo
from tether.runner.tools.base import FileLink, ToolContext
from tether.runner.tools.fit import FRAME_OVERHEAD, fit, fit_text
from tether.runner.tools.registry import TOOLS
from tether.security.capability import CapabilityVerifier

__all__ = ["CallExecutor"]

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, str, str], None]
"""(call_id, stream, text) -> None."""

_KEEP_SECONDS = 600.0
_KEEP_MAX = 10_000
_ERROR_SIZE = 1024
"""What a failed call's outcome is counted as against the cache budget."""


@dataclass
class _Call:
    token_id: str
    task: asyncio.Task[ToolOutput] | None
    """None once the outcome was forgotten to stay within the cache budget."""
    finished_at: float | None = None
    size: int = 0


@dataclass
class CallExecutor:
    config: RunnerConfig
    workspaces: dict[str, Path]
    """Workspace name -> real path."""
    verifier: CapabilityVerifier
    sandbox: SandboxInfo
    protected: ProtectedPaths
    home: Path = field(default_factory=Path.home)
    progress: ProgressSink | None = None
    files: FileLink | None = None
    """The gateway's side of file transfers (the daemon)."""
    draining: bool = False
    calls: collections.OrderedDict[str, _Call] = field(default_factory=collections.OrderedDict)

    running: int = 0
    frame_limit: int = 1024 * 1024
    """The gateway's max frame size (from ``hello``); results are cut to fit it."""
    kept_bytes: int = 0
    """Bytes of outcomes held for re-sends."""
    _identities: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, root in self.workspaces.items():
            st = os.stat(root)
            self._identities[name] = (st.st_dev, st.st_ino)

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
            if known.task is None:
                raise ToolFailed(
                    "this call's outcome is no longer kept (the runner's outcome cache is "
                    "full); it is not run again",
                    data={"reason": "outcome_forgotten"},
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
        self.protected.refresh()
        fs = WorkspaceFS(
            root,
            protected=self.protected,
            allowed=None if cap.paths in ((), (".",)) else cap.paths,
            allow_hardlinks=self.config.allow_hardlinks,
            identity=self._identities[p.workspace],
        )
        for name in spec.path_params:
            value = getattr(params, name, None)
            if isinstance(value, str):
                fs.parts(value)
        if self.draining:
            raise Overloaded("this runner is shutting down")
        if self.inflight >= self.config.max_concurrency:
            raise Overloaded(f"this runner already runs {self.config.max_concurrency} calls")
        timeout = min(p.timeout, self.config.max_timeout)
        sink = self.progress
        ctx = ToolContext(
            fs=fs,
            config=self.config,
            timeout=timeout,
            progress=(lambda stream, text: sink(p.call_id, stream, text))
            if sink is not None
            else None,
            sandbox=self.sandbox,
            home=self.home,
            call_id=p.call_id,
            files=self.files,
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
            output = exc.data.get("output")
            if isinstance(output, str):  # a timed-out command's partial output
                exc.data["output"] = fit_text(output, self.frame_limit // 2)
            raise
        duration = time.monotonic() - start
        data = fit(result, self.frame_limit - FRAME_OVERHEAD)
        log.info(
            "< tool call done",
            extra={"call_id": p.call_id, "seconds": round(duration, 3), "bytes": len(data)},
        )
        return ToolOutput(call_id=p.call_id, result=msgspec.Raw(data), duration=duration)

    def _ended(self, call: _Call) -> None:
        call.finished_at = time.monotonic()
        self.running -= 1
        task = call.task
        ok = task is not None and not task.cancelled() and task.exception() is None
        call.size = len(bytes(task.result().result)) if ok and task is not None else _ERROR_SIZE
        self.kept_bytes += call.size
        self._forget_over_budget()

    def _forget_over_budget(self) -> None:
        """Drop the oldest finished outcomes until the cache is within its byte budget."""
        budget = self.config.outcome_cache_bytes
        for call in self.calls.values():
            if self.kept_bytes <= budget:
                return
            if call.task is not None and call.task.done():
                call.task = None
                self.kept_bytes -= call.size

    def cancel(self, call_id: str) -> bool:
        call = self.calls.get(call_id)
        if call is None or call.task is None or call.task.done():
            return False
        call.task.cancel()
        return True

    def _prune(self) -> None:
        now = time.monotonic()
        while self.calls:
            call_id, oldest = next(iter(self.calls.items()))
            if oldest.finished_at is None:
                break
            if now - oldest.finished_at <= _KEEP_SECONDS and len(self.calls) <= _KEEP_MAX:
                break
            if oldest.task is not None:
                self.kept_bytes -= oldest.size
            del self.calls[call_id]

    async def drain(self, grace: float) -> None:
        """Stop taking calls; wait up to ``grace`` for running ones, then cancel the rest."""
        self.draining = True
        running = [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
