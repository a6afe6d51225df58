"""kill -9 of the gateway: nothing acknowledged is lost, runs resume or end visibly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess
from tether.transport.client import connect_ipc
from tether.transport.follow import follow

MakeGateway = Callable[..., GatewayProcess]


async def test_kill9_mid_run_resumes_or_fails_visibly(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        resumable = await r.start(c, "say one\nsleep 2\nsay two")
        once = await r.start(c, "say one\nsleep 30", agent="script-once")
        await r.wait_state(c, resumable.run.id, {"running"})
        await r.wait_state(c, once.run.id, {"running"})
        await asyncio.sleep(0.3)
    gw.kill()
    gw2 = make_gateway()
    async with await connect_ipc(gw2.socket) as c:
        done = await r.wait_state(c, resumable.run.id)
        assert (done.state, done.output, done.attempts) == ("succeeded", "two", 2)
        kinds = await r.kinds(c, resumable.run.id)
        assert "run.recovered" in kinds
        assert kinds.count("agent.message") == 2  # "one" was not said again
        failed = await r.wait_state(c, once.run.id)
        assert (failed.state, failed.reason) == ("failed", "interrupted")
        last = (await r.events(c, once.run.id))[-1]
        assert last[1] == "run.failed"
        assert "restarted" in last[2]["message"]


async def test_attempt_cap_sends_a_run_to_dead_letter(make_gateway: MakeGateway) -> None:
    gw = make_gateway(TETHER_RUNS__MAX_ATTEMPTS="1")
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "sleep 30")
        await r.wait_state(c, created.run.id, {"running"})
    gw.kill()
    gw2 = make_gateway(TETHER_RUNS__MAX_ATTEMPTS="1")
    async with await connect_ipc(gw2.socket) as c:
        run = await r.wait_state(c, created.run.id)
        assert (run.state, run.reason) == ("failed", "dead_letter")


async def test_queued_runs_survive_a_crash(make_gateway: MakeGateway) -> None:
    gw = make_gateway(TETHER_RUNS__MAX_ACTIVE="1")
    async with await connect_ipc(gw.socket) as c:
        ids = [(await r.start(c, f"sleep 0.5\nsay {i}")).run.id for i in range(3)]
        await r.wait_state(c, ids[0], {"running"})
    gw.kill()
    gw2 = make_gateway(TETHER_RUNS__MAX_ACTIVE="1")
    async with await connect_ipc(gw2.socket) as c:
        outputs = [(await r.wait_state(c, run_id)).output for run_id in ids]
    assert outputs == ["0", "1", "2"]


async def test_graceful_stop_releases_runs_for_the_next_start(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "say a\nsleep 1\nsay b")
        await r.wait_state(c, created.run.id, {"running"})
    assert gw.terminate(signal.SIGTERM) == 0
    gw2 = make_gateway()
    async with await connect_ipc(gw2.socket) as c:
        run = await r.wait_state(c, created.run.id)
        assert (run.state, run.output) == ("succeeded", "b")


async def test_kill9_during_heavy_appends_loses_no_acknowledged_event(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        runs = [(await r.start(c, "events 20000 64", agent="script-once")).run.id for _ in range(4)]
    acked = 0

    async def connect(router: object) -> object:
        return await connect_ipc(gw.socket, router=router)  # type: ignore[arg-type]

    async def watch() -> None:
        nonlocal acked
        async for event in follow(connect, runs[0]):  # type: ignore[arg-type]
            acked = event.seq  # delivered only after its commit
            if acked >= 1500:
                return

    await asyncio.wait_for(watch(), unit(60))
    gw.kill()
    gw2 = make_gateway()
    async with await connect_ipc(gw2.socket) as c:
        for run_id in runs:
            await r.wait_state(c, run_id)
            seqs = []
            after = 0
            while True:
                from tether.protocol.methods import RUN_EVENTS
                from tether.protocol.runs import RunEventsParams

                page = await c.call(
                    RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after, limit=1000)
                )
                seqs += [e.seq for e in page.events]
                if len(page.events) < 1000:
                    break
                after = page.events[-1].seq
            assert seqs == list(range(1, len(seqs) + 1)), f"gap in {run_id}"
            if run_id == runs[0]:
                assert len(seqs) >= acked
