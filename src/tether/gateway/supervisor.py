"""Supervision: every background task of the gateway is named, owned and watched.

A part of the gateway that needs a loop (the orchestrator's claim and reap loops,
retention, the ledger's event writer) starts it with :meth:`Supervisor.spawn`, or
reports a failure it caught itself with :meth:`Supervisor.fail`. An unexpected exception
is logged with its traceback and recorded as the gateway's failure: the gateway then
stops, and ``tether gateway``/``tether up`` exit non-zero naming the part and the
reason, instead of going on half alive. Cancellation on shutdown is not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["GatewayFailed", "Supervisor"]

log = logging.getLogger(__name__)


class GatewayFailed(RuntimeError):
    """A supervised part of the gateway died; the gateway stopped because of it."""

    def __init__(self, part: str, cause: BaseException) -> None:
        super().__init__(f"{part} failed: {type(cause).__name__}: {cause}")
        self.part = part
        self.cause = cause


class Supervisor:
    """Owns named background tasks; the first unexpected failure stops everything."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.failure: GatewayFailed | None = None
        self.failed = asyncio.Event()
        self._closing = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as the task ``name``; it must run until the gateway stops."""
        if name in self.tasks and not self.tasks[name].done():
            coro.close()
            raise ValueError(f"a task named {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks[name] = task
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if self._closing or task.cancelled():
            return
        exc = task.exception()
        self.fail(task.get_name(), exc or RuntimeError("stopped although it should run on"))

    def fail(self, part: str, exc: BaseException) -> None:
        """Record that ``part`` died of ``exc`` (the first failure wins) and say so loudly."""
        if self._closing:
            return
        log.critical("%s failed; stopping the gateway", part, exc_info=exc)
        if self.failure is None:
            self.failure = GatewayFailed(part, exc)
        self.failed.set()

    async def aclose(self) -> None:
        """Cancel every task and wait for them (their exceptions are not failures now)."""
        self._closing = True
        tasks = [t for t in self.tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
