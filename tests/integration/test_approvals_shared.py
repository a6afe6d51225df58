"""Two gateways on one PostgreSQL: a request one holds may be decided through the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import runs as r
from tests.support.people import open_request, resolve, shell
from tests.support.process import GatewayProcess, RunnerProcess
from tether.errors import Conflict
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_decision_made_on_another_gateway_reaches_the_waiting_run(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, database_url: str
) -> None:
    a = make_gateway()
    make_runner(a)
    (home / "b").mkdir()
    b = GatewayProcess(home / "b", env={"TETHER_DATABASE_URL": database_url})
    b.start()
    try:
        async with await connect_ipc(a.socket) as via_a, await connect_ipc(b.socket) as via_b:
            created = await r.start(via_a, shell("echo shared >> shared.txt"))
            request = await open_request(via_b, created.run.id)  # b sees a's request
            decided = await resolve(via_b, request.handle, "allow_once")
            assert decided.state == "allowed"
            with pytest.raises(Conflict):  # and a agrees there was exactly one decision
                await resolve(via_a, request.id, "deny")
            done = await r.wait_state(via_a, created.run.id)
            assert done.state == "succeeded"
    finally:
        b.stop()
    assert (home / "ws-box" / "shared.txt").read_text() == "shared\n"
