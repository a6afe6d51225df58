"""Operating the ledger through real entry points: `tether db`, retention, metrics, resync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, run_cli
from tether.ledger.engine import HEAD_REVISION
from tether.protocol.methods import RUN_EVENT, RUN_RESYNC, RUN_SUBSCRIBE, Method
from tether.protocol.runs import RunSubscribeParams
from tether.transport.client import connect_ipc
from tether.transport.connection import Handler
from tether.transport.follow import follow

MakeGateway = Callable[..., GatewayProcess]


def test_db_status_and_upgrade(home: Path, database_url: str | None) -> None:
    if database_url:
        # trust auth ignores the password; it is there to prove it is never printed
        database_url = database_url.replace("postgres@", "postgres:s3cretpw@")
    env = {"TETHER_DATABASE_URL": database_url} if database_url else {}
    if database_url:
        # a fresh, empty PostgreSQL database
        import asyncpg

        async def reset() -> None:
            conn = await asyncpg.connect(database_url)
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            await conn.close()

        asyncio.run(reset())
    before = run_cli(home, "--json", "db", "status", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["pending"] is True
    assert json.loads(before.stdout)["revision"] is None
    up = run_cli(home, "db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert f"migrated empty -> {HEAD_REVISION}" in up.stdout
    after = json.loads(run_cli(home, "--json", "db", "status", env=env).stdout)
    assert (after["revision"], after["pending"]) == (HEAD_REVISION, False)
    again = run_cli(home, "db", "upgrade", env=env)
    assert f"already at {HEAD_REVISION}" in again.stdout
    for out in (before.stdout, up.stdout, again.stdout):
        assert "s3cretpw" not in out


async def test_retention_job_runs_on_schedule(make_gateway: MakeGateway) -> None:
    gw = make_gateway(
        TETHER_LEDGER__EVENT_RETENTION_DAYS="0",
        TETHER_LEDGER__RETENTION_INTERVAL="0.3",
    )
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "say bye")
        await r.wait_state(c, created.run.id)
        for _ in range(100):
            if not await r.events(c, created.run.id):
                break
            await asyncio.sleep(0.1)
        assert await r.events(c, created.run.id) == []
        assert (await r.wait_state(c, created.run.id)).state == "succeeded"  # the run stays
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert 'tether_retention_runs_total{outcome="ok"}' in text
    deleted = next(
        line
        for line in text.splitlines()
        if line.startswith('tether_retention_deleted_total{kind="events"}')
    )
    assert float(deleted.split()[-1]) >= 3
    assert 'tether_runs_finished_total{reason="",state="succeeded"}' in text


async def test_slow_subscriber_is_told_to_resync_and_follow_catches_up(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway(TETHER_LIMITS__SEND_QUEUE_FRAMES="32")
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "events 3000 2000", agent="script-once")

    notes: list[str] = []

    class Slow:
        def route(self, method: Method[object, object]) -> Handler | None:
            if method is RUN_RESYNC:
                return lambda note: notes.append(note.reason)  # type: ignore[attr-defined]
            if method is RUN_EVENT:
                return lambda _note: None
            return None

    async with await connect_ipc(gw.socket, router=Slow()) as slow:  # type: ignore[arg-type]
        slow.conn.transport.pause_reading()  # stop reading: the gateway's send queue fills
        await asyncio.sleep(0)
        sub_task = asyncio.create_task(
            slow.call(RUN_SUBSCRIBE, RunSubscribeParams(run_id=created.run.id))
        )
        await asyncio.sleep(1.0)
        slow.conn.transport.resume_reading()
        await sub_task
        for _ in range(100):
            if notes:
                break
            await asyncio.sleep(0.05)
    assert notes
    assert notes[0] in ("slow_consumer", "buffer_full")

    # the client library resubscribes on resync: a slow follower still sees every event once
    seen: list[int] = []

    async def connect(router: object) -> object:
        return await connect_ipc(gw.socket, router=router)  # type: ignore[arg-type]

    async def slow_follow() -> None:
        async for event in follow(connect, created.run.id):  # type: ignore[arg-type]
            seen.append(event.seq)
            if len(seen) % 200 == 0:
                await asyncio.sleep(0.05)

    await asyncio.wait_for(slow_follow(), unit(60))
    assert seen == list(range(1, len(seen) + 1))


async def test_a_long_backlog_is_paced_to_the_reader_not_dropped(
    make_gateway: MakeGateway,
) -> None:
    # a send queue of 32 frames and a finished run with 1,500 events: the backlog must be
    # paced by the connection (no resync, no slow_consumer close), every event once
    gw = make_gateway(TETHER_LIMITS__SEND_QUEUE_FRAMES="32")
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "events 1500 0", agent="script-once")
        assert (await r.wait_state(c, created.run.id, timeout=60)).state == "succeeded"
    seqs: list[int] = []
    resyncs: list[str] = []
    done = asyncio.Event()

    class Reader:
        def route(self, method: Method[object, object]) -> Handler | None:
            if method is RUN_RESYNC:
                return lambda note: resyncs.append(note.reason)  # type: ignore[attr-defined]
            if method is RUN_EVENT:

                def on_event(note: object) -> None:
                    seqs.append(note.event.seq)  # type: ignore[attr-defined]
                    if note.event.kind == "run.succeeded":  # type: ignore[attr-defined]
                        done.set()

                return on_event
            return None

    async with await connect_ipc(gw.socket, router=Reader()) as sub:  # type: ignore[arg-type]
        await sub.call(RUN_SUBSCRIBE, RunSubscribeParams(run_id=created.run.id))
        await asyncio.wait_for(done.wait(), unit(60))
        assert not sub.closed
    assert resyncs == []
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > 1500
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
        assert 'reason="slow_consumer"' not in await resp.text()


async def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway(TETHER_LIMITS__SEND_QUEUE_FRAMES="32")
    reader, writer = await asyncio.open_unix_connection(gw.socket)
    hello = b'{"jsonrpc":"2.0","id":0,"method":"hello","params":{"protocol":[1],"role":"admin"}}'
    writer.write(hello + b"\n")
    assert b'"result"' in await asyncio.wait_for(reader.readline(), unit(10))
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"payload":"%s"}}\n' % (b"x" * 900)
    try:
        for _ in range(40):  # ~3.6 MB of replies that this client never reads
            writer.write(ping * 100)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the gateway closed the connection while we were still writing
    text = ""
    for _ in range(100):
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            text = await resp.text()
        if 'tether_connections_closed_total{reason="slow_consumer",transport="ipc"}' in text:
            break
        await asyncio.sleep(0.1)
    assert 'tether_connections_closed_total{reason="slow_consumer",transport="ipc"} 1.0' in text
    writer.close()
