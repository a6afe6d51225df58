"""Supervision: a failed part stops the gateway loudly; a failed writer batch strands no one.

Faults are injected into a real in-process gateway (SQLite and PostgreSQL ledgers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unit
from tether.app import Gateway, serve_gateway
from tether.config import Config, load_config
from tether.errors import InternalError
from tether.gateway.supervisor import GatewayFailed, Supervisor
from tether.ledger import NewEvent
from tether.ledger.writer import PostgresWriter, SqliteWriter


def gateway_config(home: Path, database_url: str | None) -> Config:
    env = {
        "HOME": str(home),
        "TETHER_DATA_DIR": str(home / "data"),
        "TETHER_RUNTIME_DIR": str(home / "run"),
    }
    if database_url is not None:
        env["TETHER_DATABASE_URL"] = database_url
    return load_config(env=env, flags={"gateway": {"listen": "127.0.0.1:0"}})


@pytest.fixture
async def gateway(home: Path, database_url: str | None) -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_config(home, database_url))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def event(seq: int) -> NewEvent:
    return NewEvent(seq=seq, kind="agent.message", source="agent", payload="{}", created_at=1.0)


async def test_a_failed_writer_batch_settles_every_appender_and_stops_the_gateway(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = gateway.parts.ledger
    session = await ledger.sessions.create(agent="script", created_by="t")
    run = await ledger.runs.create(
        session_id=session.id, agent="script", input="", created_by="t", event=event(1)
    )
    writer = ledger.writer

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    async def broken_async(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    if isinstance(writer, SqliteWriter):
        monkeypatch.setattr(writer, "_commit", broken)
    else:
        assert isinstance(writer, PostgresWriter)
        monkeypatch.setattr(writer, "_commit", broken_async)
    appenders = [ledger.events.append(run.id, run.epoch, [event(seq)]) for seq in range(2, 40)]
    results = await asyncio.wait_for(
        asyncio.gather(*appenders, return_exceptions=True), unit(10)
    )  # nobody waits forever
    assert results, results
    assert all(isinstance(r, InternalError) for r in results), results
    with pytest.raises(InternalError, match="event writer failed"):
        await asyncio.wait_for(ledger.events.append(run.id, run.epoch, [event(50)]), unit(5))
    failure = await asyncio.wait_for(gateway.wait_failed(), unit(5))
    assert isinstance(failure, GatewayFailed)
    assert failure.part == "ledger:writer"
    assert "the disk caught fire" in str(failure)


async def test_a_supervised_task_that_dies_stops_serve_gateway(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def dies() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("boom")

    def on_ready(gw: Gateway) -> None:
        gw.supervisor.spawn("test:dies", dies())

    start = time.monotonic()
    with pytest.raises(GatewayFailed) as info:
        await asyncio.wait_for(
            serve_gateway(gateway_config(home, None), on_ready=on_ready), unit(20)
        )
    assert info.value.part == "test:dies"
    assert isinstance(info.value.cause, ValueError)
    assert time.monotonic() - start < unit(20)
    assert any("test:dies failed" in rec.getMessage() and rec.exc_info for rec in caplog.records), (
        "the failure is logged with its traceback"
    )
    assert not (home / "run" / "gateway.sock").exists()  # stopped and cleaned up


async def test_supervisor_rules() -> None:
    sup = Supervisor()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def returns() -> None:
        return None

    sup.spawn("forever", forever())
    with pytest.raises(ValueError, match="already running"):
        sup.spawn("forever", forever())
    sup.spawn("returns", returns())
    await asyncio.wait_for(sup.failed.wait(), unit(5))
    assert sup.failure is not None
    assert sup.failure.part == "returns"  # a loop that ends on its own is a failure too
    await sup.aclose()
    assert all(t.done() for t in sup.tasks.values())
