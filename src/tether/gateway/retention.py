"""The scheduled retention job: applies the ledger's retention policy every interval."""

from __future__ import annotations

import asyncio
import logging

from tether.gateway.metrics import GatewayMetrics
from tether.ledger import Ledger

__all__ = ["RetentionJob"]

log = logging.getLogger(__name__)


class RetentionJob:
    """Runs ``ledger.purge()`` now and then every ``interval`` seconds (:meth:`loop`)."""

    def __init__(self, ledger: Ledger, metrics: GatewayMetrics, interval: float) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.interval = interval

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
        self.metrics.retention_deleted.labels("receipts").inc(result.receipts)
        self.metrics.retention_deleted.labels("deliveries").inc(result.deliveries)
        log.info(
            "retention pass",
            extra={
                "artifacts": result.artifacts,
                "events": result.events,
                "receipts": result.receipts,
                "deliveries": result.deliveries,
            },
        )

    async def loop(self) -> None:
        """Purge now and then every interval, forever (run it under the supervisor)."""
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)
