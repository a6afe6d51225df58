"""The retention job: each pass is counted, what it removed is counted, a failure is survived."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import pytest

from tests.conftest import unit
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.retention import RetentionJob
from tether.ledger import Ledger, NewEvent
from tether.ledger.retention import PurgeResult
from tether.types import RunState

DAY = 86_400.0


def passes(metrics: GatewayMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("tether_retention_runs_total", {"outcome": outcome})
    return value or 0.0


def deleted(metrics: GatewayMetrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("tether_retention_deleted_total", {"kind": kind})
    return value or 0.0


def event(seq: int, kind: str = "agent.message") -> NewEvent:
    return NewEvent(seq=seq, kind=kind, source="agent", payload="{}", created_at=1.0)


async def finished_long_ago(ledger: Ledger, events: int) -> str:
    """A run with ``events`` events that was cancelled 40 days ago."""
    session = await ledger.sessions.create(agent="script")
    run = await ledger.runs.create(
        session_id=session.id, agent="script", input="", created_by=None, event=event(1)
    )
    await ledger.events.append(run.id, run.epoch, [event(i) for i in range(2, events)])
    cancelled = NewEvent(
        seq=events, kind="run.cancelled", source="gateway", payload="{}", created_at=1.0
    )
    await ledger.runs.transition(
        run.id, epoch=run.epoch, to=RunState.CANCELLED, event=cancelled, now=time.time() - 40 * DAY
    )
    return run.id


async def test_a_pass_counts_what_it_removed(ledger: Ledger) -> None:
    old = await finished_long_ago(ledger, events=5)
    kept = await ledger.sessions.create(agent="script")
    active = await ledger.runs.create(
        session_id=kept.id, agent="script", input="", created_by=None, event=event(1)
    )
    for name in ("a", "b"):  # two artifacts that expired an hour ago
        await ledger.events.put_artifact(
            run_id=None,
            name=name,
            media_type="text/plain",
            content=b"x",
            ttl=1,
            now=time.time() - 3600,
        )
    metrics = GatewayMetrics()
    job = RetentionJob(ledger, metrics, interval=3600)
    await job.run_once()
    assert passes(metrics, "ok") == 1
    assert passes(metrics, "error") == 0
    assert deleted(metrics, "events") == 5
    assert deleted(metrics, "artifacts") == 2
    assert await ledger.events.read(old) == []
    assert len(await ledger.events.read(active.id)) == 1  # a queued run is never touched
    await job.run_once()  # nothing left: counted as a pass that removed nothing
    assert passes(metrics, "ok") == 2
    assert (deleted(metrics, "events"), deleted(metrics, "artifacts")) == (5, 2)


class FlakyLedger:
    """A ledger whose purge fails the first ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def purge(self) -> PurgeResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("database is on fire")
        return PurgeResult(artifacts=1, events=3)


async def test_a_failing_pass_is_counted_and_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = GatewayMetrics()
    flaky = FlakyLedger(failures=1)
    job = RetentionJob(cast(Ledger, flaky), metrics, interval=3600)
    with caplog.at_level(logging.ERROR, logger="tether.gateway.retention"):
        await job.run_once()
    assert (passes(metrics, "error"), passes(metrics, "ok")) == (1, 0)
    assert (deleted(metrics, "events"), deleted(metrics, "artifacts")) == (0, 0)
    (record,) = [r for r in caplog.records if r.name == "tether.gateway.retention"]
    assert "retention pass failed" in record.getMessage()
    assert record.exc_info is not None
    await job.run_once()
    assert (passes(metrics, "error"), passes(metrics, "ok")) == (1, 1)
    assert (deleted(metrics, "events"), deleted(metrics, "artifacts")) == (3, 1)


async def test_the_loop_keeps_going_after_a_failure() -> None:
    metrics = GatewayMetrics()
    flaky = FlakyLedger(failures=2)
    job = RetentionJob(cast(Ledger, flaky), metrics, interval=0.01)
    loop = asyncio.create_task(job.loop())
    try:
        async with asyncio.timeout(unit(5)):
            while passes(metrics, "ok") < 2:
                await asyncio.sleep(0.005)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    assert passes(metrics, "error") == 2  # two failed passes, and the loop went on
