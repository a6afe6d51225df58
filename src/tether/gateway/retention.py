"""The scheduled retention job: applies the ledger's retention policy every interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tether.gateway.metrics import GatewayMetrics
from tether.ledger import Ledger

__all__ = ["RetentionJob"]

log = logging.getLogger(__name__)


class RetentionJob:
    """Runs ``ledger.purge()`` now and then every ``interval`` seconds."""

    def __init__(self, ledger: Ledger, metrics: GatewayMetrics, interval: float) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention")

    async def run_once(self) -> None:
        try:
            result = await self.ledger.purge()
        except Exception:
            self.metrics.retention_runs.labels("error").inc()
            log.exception("retention pass failed")
            return
        self.metrics.retention_runs.labels("ok").inc()
        self.metrics.retention_deleted.labels("artifacts").inc(result.artifacts)
        self.metrics.retention_deleted.labels("events").inc(result.events)
        log.info("retention pass", extra={"artifacts": result.artifacts, "events": result.events})

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
