"""kill -9 of the gateway: nothing acknowledged is lost, runs resume or end visibly."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, short_tempdir
from tether.protocol.methods import RUN_EVENTS
from tether.protocol.runs import RunEventsParams
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


async def test_recovery_respects_max_active(make_gateway: MakeGateway) -> None:
    fast = {"TETHER_RUNS__REAP_INTERVAL": "0.3"}
    gw = make_gateway(TETHER_RUNS__MAX_ACTIVE="2", **fast)
    async with await connect_ipc(gw.socket) as c:
        ids = [(await r.start(c, "say one\nsleep 1\nsay two")).run.id for _ in range(2)]
        for run_id in ids:
            for _ in range(100):
                if "agent.message" in await r.kinds(c, run_id):
                    break
                await asyncio.sleep(0.05)
    gw.kill()
    gw2 = make_gateway(TETHER_RUNS__MAX_ACTIVE="1", **fast)
    async with await connect_ipc(gw2.socket) as c:
        spans = []
        for run_id in ids:
            done = await r.wait_state(c, run_id, timeout=30)
            assert (done.state, done.output, done.attempts) == ("succeeded", "two", 2)
            page = await c.call(RUN_EVENTS, RunEventsParams(run_id=run_id))
            recovered = next(e.created_at for e in page.events if e.kind == "run.recovered")
            assert done.finished_at is not None
            spans.append((recovered, done.finished_at))
    first, second = sorted(spans)
    assert first[1] <= second[0]  # resumed one at a time


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


async def _stop_between_transactions(pid: int, database_url: str) -> None:
    """SIGSTOP the gateway at a moment none of its connections is inside a transaction.

    A process stopped mid-transaction keeps its row locks, and a takeover rightly waits
    for them; this test is about a gateway stalled while idle."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state <> 'idle'"
        )
        for _ in range(50):
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(0.02)  # what was on the wire reaches the server
            if await conn.fetchval(query) == 0:
                return
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.01)
        raise AssertionError("the gateway never paused between transactions")
    finally:
        await conn.close()


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_stalled_gateway_loses_its_run_to_another_and_is_fenced(
    make_gateway: MakeGateway, database_url: str
) -> None:
    """Two gateways on one PostgreSQL database. A stalls (SIGSTOP) holding a run; B's reaper
    takes the run over when A's lease expires and resumes it; A wakes up (SIGCONT) and its
    agent tries to go on: A's event is refused (fenced), so everything after the takeover
    is B's."""
    import asyncpg

    lease = {"TETHER_RUNS__LEASE_SECONDS": "4", "TETHER_RUNS__REAP_INTERVAL": "0.3"}
    a = make_gateway(**lease)
    async with await connect_ipc(a.socket) as c:
        # the agent's sleep ends before A's next lease renewal (lease / 3) would fire
        created = await r.start(c, "say one\nsleep 0.8\nsay two")
        run_id = created.run.id
        for _ in range(100):  # line 1 is done (its agent.step is written): A is sleeping
            if "agent.step" in await r.kinds(c, run_id):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the run never finished its first line")
    await _stop_between_transactions(a.pid, database_url)  # A holds the lease, says nothing
    try:
        with short_tempdir() as other:
            b = GatewayProcess(other, env={"TETHER_DATABASE_URL": database_url, **lease})
            b.start()
            try:
                async with await connect_ipc(b.socket) as c:
                    taken = await r.wait_state(c, run_id, {"running", "succeeded"}, timeout=30)
                    for _ in range(200):
                        if taken.attempts >= 2:
                            break
                        await asyncio.sleep(0.05)
                        taken = await r.wait_state(c, run_id, {"running", "succeeded"})
                    assert taken.attempts == 2  # B reclaimed it after A's lease ran out
                    os.kill(a.pid, signal.SIGCONT)  # A's agent wakes and says "two" at once
                    done = await r.wait_state(c, run_id, timeout=30)
                    assert (done.state, done.output) == ("succeeded", "two")
                    kinds = await r.kinds(c, run_id)
                assert "lease lost" in a.stderr()
            finally:
                b.stop()
    finally:
        os.kill(a.pid, signal.SIGCONT)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT seq, kind, epoch FROM run_events WHERE run_id = $1 ORDER BY seq", run_id
        )
    finally:
        await conn.close()
    assert [row["kind"] for row in rows] == kinds
    assert kinds.count("agent.message") == 2
    recovered = kinds.index("run.recovered")
    assert {row["epoch"] for row in rows[recovered:]} == {2}  # nothing from A after that
