"""Runs through the real `tether gateway` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, run_cli
from tether.errors import InvalidParams, NotFound
from tether.protocol.methods import (
    ARTIFACT_GET,
    RUN_CANCEL,
    RUN_LIST,
    SESSION_GET,
    SESSION_LIST,
)
from tether.protocol.runs import (
    ArtifactGetParams,
    RunCancelParams,
    RunListParams,
    SessionGetParams,
    SessionListParams,
)
from tether.transport.client import connect_ipc
from tether.transport.follow import follow

MakeGateway = Callable[..., GatewayProcess]


async def test_run_lifecycle(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "say hello\nevents 3\nsay bye")
        assert created.disposition == "started"
        run = await r.wait_state(c, created.run.id)
        assert (run.state, run.output, run.attempts) == ("succeeded", "bye", 1)
        kinds = await r.kinds(c, run.id)
        assert kinds[:2] == ["run.queued", "run.started"]
        assert kinds[-1] == "run.succeeded"
        assert kinds.count("agent.delta") == 3
        seqs = [s for s, _, _ in await r.events(c, run.id)]
        assert seqs == list(range(1, len(seqs) + 1))
        session = await c.call(SESSION_GET, SessionGetParams(session_id=run.session_id))
        assert session.agent == "script"
        sessions = await c.call(SESSION_LIST, SessionListParams())
        assert [s.id for s in sessions.sessions] == [run.session_id]
        with pytest.raises(InvalidParams, match="unknown agent"):
            await r.start(c, "say x", agent="nope")
        with pytest.raises(NotFound):
            await r.start(c, "say x", session_id="ses_missing")


async def test_agent_failures_end_the_run(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        failed = await r.wait_state(c, (await r.start(c, "say a\nfail nope")).run.id)
        assert (failed.state, failed.reason) == ("failed", "nope")
        crashed = await r.wait_state(c, (await r.start(c, "crash")).run.id)
        assert (crashed.state, crashed.reason) == ("failed", "agent_error")
        assert "RuntimeError" in (crashed.output or "")


async def test_one_active_run_per_session_in_order(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, "sleep 0.3\nsay first")
        second = await r.start(c, "say second", session_id=first.run.session_id, steer=False)
        assert second.disposition == "queued"
        done2 = await r.wait_state(c, second.run.id)
        done1 = await r.wait_state(c, first.run.id)
        assert done1.finished_at is not None
        assert done2.started_at is not None
        assert done1.finished_at <= done2.started_at


async def test_max_active_holds_runs_queued_and_queue_ttl_expires_them(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway(
        TETHER_RUNS__MAX_ACTIVE="1",
        TETHER_RUNS__QUEUE_TTL="1.5",
        TETHER_RUNS__REAP_INTERVAL="0.2",
    )
    async with await connect_ipc(gw.socket) as c:
        busy = await r.start(c, "sleep 4\nsay done")
        await r.wait_state(c, busy.run.id, {"running"})
        waiting = await r.start(c, "say never")  # another session: only max_active holds it
        await asyncio.sleep(0.6)
        assert (await r.wait_state(c, waiting.run.id, {"queued", "expired"})).state == "queued"
        expired = await r.wait_state(c, waiting.run.id, {"expired"})
        assert (expired.reason, expired.started_at) == ("queue_ttl", None)
        assert (await r.kinds(c, waiting.run.id))[-1] == "run.expired"
        assert (await r.wait_state(c, busy.run.id)).state == "succeeded"
        after = await r.start(c, "say next")
        assert (await r.wait_state(c, after.run.id)).output == "next"


async def test_cancel_queued_running_and_escalation(make_gateway: MakeGateway) -> None:
    gw = make_gateway(TETHER_RUNS__CANCEL_GRACE="0.5")
    async with await connect_ipc(gw.socket) as c:
        running = await r.start(c, "sleep 30")
        queued = await r.start(c, "say never", session_id=running.run.session_id, steer=False)
        await r.wait_state(c, running.run.id, {"running"})
        info = await c.call(
            RUN_CANCEL, RunCancelParams(run_id=queued.run.id, reason="changed my mind")
        )
        assert info.state == "cancelled"
        await c.call(RUN_CANCEL, RunCancelParams(run_id=running.run.id))
        done = await r.wait_state(c, running.run.id, timeout=5)
        assert done.state == "cancelled"
        assert "run.cancel_requested" in await r.kinds(c, running.run.id)

        hung = await r.start(c, "hang")
        await r.wait_state(c, hung.run.id, {"running"})
        await c.call(RUN_CANCEL, RunCancelParams(run_id=hung.run.id))
        done = await r.wait_state(c, hung.run.id, timeout=5)
        assert done.state == "cancelled"
        assert "run.stop_escalated" in await r.kinds(c, hung.run.id)
        # cancelling a finished run changes nothing
        again = await c.call(RUN_CANCEL, RunCancelParams(run_id=hung.run.id))
        assert again.state == "cancelled"


async def test_wall_clock_cap_and_stall_watchdog(make_gateway: MakeGateway) -> None:
    gw = make_gateway(
        TETHER_RUNS__MAX_DURATION="1.0",
        TETHER_RUNS__STALL_TIMEOUT="0.6",
        TETHER_RUNS__CANCEL_GRACE="0.3",
    )
    async with await connect_ipc(gw.socket) as c:
        busy = await r.start(c, "\n".join(["events 1", "sleep 0.3"] * 20))
        stalled = await r.start(c, "say hi\nsleep 30")
        waiting = await r.start(c, "wait 0.8\nsay ok")  # waiting does not count as a stall
        b = await r.wait_state(c, busy.run.id, timeout=10)
        s = await r.wait_state(c, stalled.run.id, timeout=10)
        w = await r.wait_state(c, waiting.run.id, timeout=10)
        assert (b.state, b.reason) == ("failed", "timeout")
        assert (s.state, s.reason) == ("failed", "stalled")
        assert (w.state, w.output) == ("succeeded", "ok")
        assert "run.waiting" in await r.kinds(c, waiting.run.id)


async def test_steering_received_dropped_and_unpulled(make_gateway: MakeGateway) -> None:
    gw = make_gateway(TETHER_RUNS__STEERING_QUEUE="2")
    async with await connect_ipc(gw.socket) as c:
        steered = await r.start(c, "steer 2")
        await r.wait_state(c, steered.run.id, {"running"})
        extra = await r.start(c, "hello", session_id=steered.run.session_id)
        assert extra.disposition == "steered"
        assert extra.run.id == steered.run.id
        done = await r.wait_state(c, steered.run.id)
        assert done.output == "steered: hello"

        deaf = await r.start(c, "sleep 2")  # never pulls steering
        await r.wait_state(c, deaf.run.id, {"running"})
        sid = deaf.run.session_id
        results = [await r.start(c, f"m{i}", session_id=sid) for i in range(3)]
        assert [x.disposition for x in results] == ["steered", "steered", "dropped"]
        await r.wait_state(c, deaf.run.id)
        evs = await r.events(c, deaf.run.id)
        dropped = [(p["reason"], p["text"]) for _, k, p in evs if k == "steering.dropped"]
        assert dropped == [("queue_full", "m2")]  # its sender was told "dropped"
        # what the agent never read becomes the session's next runs: it will see it
        requeued = [(p["text"], p["run_id"]) for _, k, p in evs if k == "steering.requeued"]
        assert [text for text, _ in requeued] == ["m0", "m1"]
        assert [k for _, k, _ in evs][-1] == "run.succeeded"  # the requeues come before the end
        for text, run_id in requeued:
            later = await r.wait_state(c, run_id)
            assert (later.input, later.session_id) == (text, sid)


async def test_subscription_resumes_across_a_dropped_connection(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "events 40\nsleep 0.5\nevents 40")
    seen: list[int] = []
    drops = 0

    async def connect(router: object) -> object:
        return await connect_ipc(gw.socket, router=router)  # type: ignore[arg-type]

    async for event in follow(connect, created.run.id):  # type: ignore[arg-type]
        seen.append(event.seq)
        if event.seq in (10, 50) and drops < 2:
            drops += 1
            await _drop_ipc_connections()  # the follower must reconnect and resume
    assert seen == list(range(1, len(seen) + 1))
    assert drops == 2


async def _drop_ipc_connections() -> None:
    """Abort every client-side Unix-socket transport of this process."""
    import gc

    from tether.transport.ipc import IpcConnection

    for obj in gc.get_objects():
        if isinstance(obj, IpcConnection) and not obj.is_closing:
            obj.transport.abort()
    await asyncio.sleep(0)


async def test_session_subscription_sees_every_run(make_gateway: MakeGateway) -> None:
    from tether.protocol.methods import RUN_EVENT, RUN_SUBSCRIBE
    from tether.protocol.runs import RunSubscribeParams

    gw = make_gateway()
    received: list[tuple[str, int]] = []
    finished: list[str] = []
    done = asyncio.Event()

    class Inbox:
        def route(self, method: object) -> object:
            if method is RUN_EVENT:

                def handle(note: object) -> None:
                    ev = note.event  # type: ignore[attr-defined]
                    received.append((ev.run_id, ev.seq))
                    if ev.kind == "run.succeeded":
                        finished.append(ev.run_id)
                        if len(finished) == 2:
                            done.set()

                return handle
            return None

    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, "sleep 0.3\nsay a")
        async with await connect_ipc(gw.socket, router=Inbox()) as sub:  # type: ignore[arg-type]
            await sub.call(RUN_SUBSCRIBE, RunSubscribeParams(session_id=first.run.session_id))
            second = await r.start(c, "say b", session_id=first.run.session_id, steer=False)
            await asyncio.wait_for(done.wait(), unit(10))
        for run_id in (first.run.id, second.run.id):
            seqs = [s for rid, s in received if rid == run_id]
            assert seqs == list(range(1, len(seqs) + 1)), "every event once, in order"
            assert len(seqs) == len(await r.events(c, run_id))


async def test_a_session_subscription_replays_finished_runs(make_gateway: MakeGateway) -> None:
    """With ``after: {}`` (or nothing) a session subscription starts from the beginning:
    finished runs are in the backlog too."""
    from tether.protocol.methods import RUN_EVENT, RUN_SUBSCRIBE
    from tether.protocol.runs import RunSubscribeParams

    gw = make_gateway()
    received: list[tuple[str, int]] = []

    class Inbox:
        def route(self, method: object) -> object:
            if method is RUN_EVENT:
                return lambda note: received.append((note.event.run_id, note.event.seq))
            return None

    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, "say a")
        await r.wait_state(c, first.run.id)
        second = await r.start(c, "say b", session_id=first.run.session_id, steer=False)
        await r.wait_state(c, second.run.id)
        expected = [(first.run.id, s) for s in range(1, len(await r.events(c, first.run.id)) + 1)]
        expected += [
            (second.run.id, s) for s in range(1, len(await r.events(c, second.run.id)) + 1)
        ]
        for params in (
            RunSubscribeParams(session_id=first.run.session_id, after={}),
            RunSubscribeParams(session_id=first.run.session_id),
        ):
            received.clear()
            async with await connect_ipc(gw.socket, router=Inbox()) as sub:  # type: ignore[arg-type]
                await sub.call(RUN_SUBSCRIBE, params)
                for _ in range(200):
                    if len(received) >= len(expected):
                        break
                    await asyncio.sleep(0.02)
            assert received == expected
        received.clear()
        async with await connect_ipc(gw.socket, router=Inbox()) as sub:  # type: ignore[arg-type]
            later = RunSubscribeParams(session_id=first.run.session_id, since_run=second.run.id)
            await sub.call(RUN_SUBSCRIBE, later)
            for _ in range(200):
                if len(received) >= len(expected) - len(expected) // 2:
                    break
                await asyncio.sleep(0.02)
        assert {run for run, _ in received} == {second.run.id}


async def test_run_list_filters_and_pages(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        ids = [(await r.start(c, "say x")).run.id for _ in range(5)]
        for run_id in ids:
            await r.wait_state(c, run_id)
        page = await c.call(RUN_LIST, RunListParams(limit=2, states=["succeeded"]))
        assert [x.id for x in page.runs] == ids[::-1][:2]
        assert page.next_cursor is not None
        rest = await c.call(RUN_LIST, RunListParams(limit=10, cursor=page.next_cursor))
        assert [x.id for x in rest.runs] == ids[::-1][2:]


def test_cli_runs_commands(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    started = run_cli(gw.home, "--json", "runs", "start", "say from the cli")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run"]["id"]
    tail = run_cli(gw.home, "runs", "tail", run_id)
    assert tail.returncode == 0, tail.stderr
    assert "run.succeeded" in tail.stdout
    assert "from the cli" in tail.stdout
    show = run_cli(gw.home, "runs", "show", run_id)
    assert "succeeded" in show.stdout
    listing = run_cli(gw.home, "--json", "runs", "list")
    assert json.loads(listing.stdout)["runs"][0]["id"] == run_id
    evs = run_cli(gw.home, "--json", "runs", "events", run_id, "--after", "1")
    assert json.loads(evs.stdout)["events"][0]["seq"] == 2
    cancel = run_cli(gw.home, "runs", "cancel", run_id)
    assert "already succeeded" in cancel.stdout
    missing = run_cli(gw.home, "runs", "show", "run_nope")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    bad = run_cli(gw.home, "runs", "list", "--state", "bogus")
    assert bad.returncode == 2
    sessions = run_cli(gw.home, "sessions", "list")
    assert json.loads(started.stdout)["run"]["session_id"] in sessions.stdout


async def test_large_payloads_are_fetched_as_artifacts(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "events 1 300000")  # one 300 kB event: over the inline cap
        await r.wait_state(c, created.run.id)
        ((_seq, _kind, ref),) = [
            e for e in await r.events(c, created.run.id) if e[1] == "agent.delta"
        ]
        assert set(ref) == {"artifact", "size", "media_type"}
        chunks = []
        offset = 0
        while True:  # page through it over RPC
            chunk = await c.call(
                ARTIFACT_GET,
                ArtifactGetParams(artifact_id=ref["artifact"], offset=offset, limit=100_000),
            )
            chunks.append(chunk.data)
            offset += len(chunk.data)
            if chunk.eof:
                break
        assert len(chunks) == 4
        assert json.loads(b"".join(chunks)) == {"index": 0, "text": "x" * 300_000}
        with pytest.raises(NotFound):
            await c.call(ARTIFACT_GET, ArtifactGetParams(artifact_id="art_missing"))
    out = home / "payload.json"
    fetched = run_cli(gw.home, "runs", "artifact", ref["artifact"], "--out", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(out.read_text())["text"] == "x" * 300_000
    assert "300" in fetched.stdout


async def test_secrets_in_agent_output_never_reach_the_ledger(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    secret = "tta_" + "s3cr3t" * 8
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, f"say here is the key {secret}")
        run = await r.wait_state(c, created.run.id)
        assert run.output is not None
        assert secret not in run.output
        payloads = json.dumps([p for _, _, p in await r.events(c, run.id)])
    assert "here is the key" in payloads
    assert secret not in payloads
    assert "[redacted]" in payloads
