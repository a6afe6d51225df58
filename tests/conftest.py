"""Shared fixtures: scaled timeouts, temporary homes, real gateway processes and scripted
model servers."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.model_server import ModelServer
from tests.support.process import GatewayProcess, RunnerProcess, short_tempdir
from tests.support.webhook import hook  # noqa: F401 - the webhook stand-in fixture

SCALE = float(os.environ.get("TETHER_TEST_SCALE", "1"))


def unit(seconds: float) -> float:
    """A timeout for tests, scaled for slow machines by $TETHER_TEST_SCALE."""
    return seconds * SCALE


@pytest.fixture
def home() -> Iterator[Path]:
    """A short temporary directory (Unix socket paths must stay under 108 bytes)."""
    with short_tempdir() as path:
        yield path


@pytest.fixture
def gateway(home: Path) -> Iterator[GatewayProcess]:
    """A `tether gateway` subprocess on 127.0.0.1 port 0, stopped with SIGTERM afterwards."""
    proc = GatewayProcess(home)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def pytest_report_header() -> list[str]:
    return [f"tether tests: python {sys.version.split()[0]}, time scale {SCALE}"]


# ---- ledgers on both engines ----------------------------------------------------------


from tests.support.databases import PgTemplate, pg_url  # noqa: E402
from tether.config import LedgerConfig  # noqa: E402
from tether.ledger import Ledger  # noqa: E402

_template = PgTemplate()


def pytest_sessionfinish() -> None:
    _template.drop_template()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
async def database_url(engine: str, tmp_path: Path) -> AsyncIterator[str | None]:
    """None means SQLite in the data dir; else a fresh PostgreSQL database (dropped after)."""
    if engine == "sqlite":
        yield None
        return
    await _template.prepare(tmp_path)
    name = await _template.copy()
    try:
        yield pg_url(name)
    finally:
        await PgTemplate.drop(name)


@pytest.fixture
async def ledger(database_url: str | None, tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(LedgerConfig(database_url=database_url), tmp_path)
    try:
        yield led
    finally:
        await led.aclose()


@pytest.fixture
def make_gateway(home: Path, database_url: str | None) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `tether gateway` processes on this test's database (SQLite or PostgreSQL)."""
    started: list[GatewayProcess] = []

    def make(*args: str, **env: str) -> GatewayProcess:
        full = dict(env)
        if database_url is not None:
            full.setdefault("TETHER_DATABASE_URL", database_url)
        proc = GatewayProcess(home, env=full, args=args)
        proc.start()
        started.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def make_runner(home: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Enrol (through the CLI) and start `tether runner` processes; stopped afterwards."""
    started: list[RunnerProcess] = []

    def make(
        gateway: GatewayProcess,
        name: str = "box",
        workspaces: dict[str, Path] | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> RunnerProcess:
        if workspaces is None:
            ws = home / f"ws-{name}"
            ws.mkdir(exist_ok=True)
            workspaces = {"app": ws}
        runner = RunnerProcess(home, name, env=env)
        runner.enroll(gateway, workspaces)
        if start:
            runner.start()
        started.append(runner)
        return runner

    try:
        yield make
    finally:
        for runner in started:
            runner.stop()


@pytest.fixture
async def model() -> AsyncIterator[Callable[[list[dict[str, Any]]], Any]]:
    """Start scripted model servers on 127.0.0.1 (``await model(script)``); closed after."""
    servers: list[ModelServer] = []

    async def start(script: list[dict[str, Any]]) -> ModelServer:
        server = await ModelServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
