"""Routines through real gateway processes and the real CLI: a seconds schedule fires on
time (real time, honestly short), a missed window runs once after a restart (or not at
all with ``skip``), two gateways on one PostgreSQL start exactly one run per due time,
pause/resume/remove work, and nobody manages what is not theirs."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support import runs as r
from tests.support.people import MEMBERS_MAY_SCRIPT, add_user, as_user, open_request, resolve
from tests.support.process import SCALE, GatewayProcess, run_cli
from tests.support.webhook import SECRET, SECRET_ENV, WebhookStandIn, config_toml, event, post
from tether.config import LedgerConfig
from tether.ledger import Ledger
from tether.ledger.schema import inbound_receipts
from tether.protocol.access import RequestListParams
from tether.protocol.chat import ChatSendParams
from tether.protocol.methods import CHAT_SEND, REQUEST_LIST, RUN_LIST
from tether.protocol.runs import RunInfo, RunListParams
from tether.transport.client import RpcClient, connect_ipc

MakeGateway = Callable[..., GatewayProcess]

EVERY_2S = "* * * * * */2"
QUICK = {"TETHER_ROUTINES__POLL_INTERVAL": "0.2"}


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``tether --json ARGS``, which must succeed; its JSON answer."""
    done = run_cli(home, "--json", *args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


def refused(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``tether ARGS``, which must fail; what it said."""
    done = run_cli(home, *args, env=env)
    assert done.returncode != 0, (args, done.stdout)
    return done.stderr


async def session_of(client: RpcClient) -> str:
    created = await r.start(client, "say setup")
    await r.wait_state(client, created.run.id)
    return created.run.session_id


async def routine_runs(client: RpcClient, session_id: str, text: str) -> list[RunInfo]:
    page = await client.call(RUN_LIST, RunListParams(session_id=session_id, limit=200))
    return sorted((x for x in page.runs if x.input == text), key=lambda x: x.created_at)


async def wait_runs(
    client: RpcClient, session_id: str, text: str, count: int, timeout: float = 20.0
) -> list[RunInfo]:
    deadline = time.monotonic() + timeout * SCALE
    while True:
        found = await routine_runs(client, session_id, text)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} routine runs"
        await asyncio.sleep(0.1)


async def due_times(gw: GatewayProcess, database_url: str | None, routine_id: str) -> list[float]:
    """The due times the routine's firings were recorded for (their receipts), in order."""
    ledger = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)
    try:
        async with ledger.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(inbound_receipts.c.event_id).where(
                        inbound_receipts.c.channel == "routine"
                    )
                )
            ).all()
    finally:
        await ledger.aclose()
    out = []
    for (event_id,) in rows:
        rid, _, due = str(event_id).rpartition(":")
        if rid == routine_id:
            out.append(float(due))
    return sorted(out)


def add_args(name: str, session: str, text: str, *more: str) -> tuple[str, ...]:
    return (
        "routines",
        "add",
        name,
        "--cron",
        EVERY_2S,
        "--session",
        session,
        "--input",
        text,
        *more,
    )


# ---- (a) on schedule -----------------------------------------------------------------------


async def test_a_routine_every_two_seconds_fires_in_its_session_as_its_owner(
    make_gateway: MakeGateway, home: Path, database_url: str | None
) -> None:
    gw = make_gateway(**QUICK)
    async with await connect_ipc(gw.socket) as c:
        sid = await session_of(c)
        added = cli(home, *add_args("tick", sid, "say tick", "--tz", "Asia/Shanghai"))
        assert (added["state"], added["tz"], added["owner"]) == (
            "active",
            "Asia/Shanghai",
            "local-admin",
        )
        assert added["next_fire_at"] > time.time() - 1
        runs = await wait_runs(c, sid, "say tick", 2)
        for run in runs:
            assert run.session_id == sid
            assert run.created_by == "local-admin"  # the owner: who may decide its requests
        done = await r.wait_state(c, runs[0].id)
        assert done.state == "succeeded"
        assert done.output == "tick"
    (listed,) = cli(home, "routines", "list")["routines"]
    assert listed["last_run_id"] is not None
    assert listed["next_fire_at"] > listed["last_fired_at"]
    gw.stop()
    dues = await due_times(gw, database_url, added["id"])
    assert len(dues) >= 2
    assert all(b - a >= 2 for a, b in itertools.pairwise(dues))  # never twice


async def test_a_routine_in_a_chats_session_answers_in_that_chat(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    config_toml(home / "config", hook.url)
    gw = make_gateway(**{SECRET_ENV: SECRET, **QUICK})
    await add_user(gw, "alice")
    cli(home, "users", "link", "alice", "--channel", "webhook.ops", "--id", "u-alice")
    await post(gw.url, event("s1", "/status"))
    status = await hook.wait_for(lambda d: d["text"].startswith("Session "))
    sid = status["text"].split()[1].rstrip(":,.")
    assert sid.startswith("ses_"), status["text"]
    added = cli(home, *add_args("daily-help", sid, "help"))
    reply = await hook.wait_for(lambda d: d["kind"] == "reply" and d.get("run_id") is not None)
    cli(home, "routines", "pause", "daily-help")
    assert reply["chat"]["id"] == "c1"
    async with await connect_ipc(gw.socket) as c:
        runs = await routine_runs(c, sid, "help")
    assert reply["run_id"] in {x.id for x in runs}
    assert all(x.created_by == added["owner"] for x in runs)


# ---- (b) a missed window -------------------------------------------------------------------


@pytest.mark.parametrize("catch_up", ["once", "skip"])
async def test_a_window_missed_while_the_gateway_was_down(
    make_gateway: MakeGateway, home: Path, database_url: str | None, catch_up: str
) -> None:
    gw = make_gateway(**QUICK)
    async with await connect_ipc(gw.socket) as c:
        sid = await session_of(c)
        added = cli(home, *add_args("tick", sid, "say tick", "--catch-up", catch_up))
        await wait_runs(c, sid, "say tick", 1)
    gw.terminate()
    stopped = time.time()
    await asyncio.sleep(7.0)  # three or four due times pass with no gateway
    starting = time.time()
    gw.start()
    ready = time.time()
    async with await connect_ipc(gw.socket) as c:
        before = len(await routine_runs(c, sid, "say tick"))
        await wait_runs(c, sid, "say tick", before + 2)  # and the schedule goes on
    gw.stop()
    after = [d for d in await due_times(gw, database_url, added["id"]) if d > stopped]
    missed = [d for d in after if d < starting]
    if catch_up == "once":
        # exactly one run for the window: its latest due time, fired at start
        first = after[0]
        assert starting - 2 <= first <= ready + 0.5, (stopped, starting, ready, after)
        assert [d for d in missed if d < first] == []
        assert len([d for d in after if d <= first]) == 1
    else:
        assert missed == [], (stopped, starting, after)
    assert all(b - a >= 2 for a, b in itertools.pairwise(after))


# ---- (c) two gateways, one database --------------------------------------------------------


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_gateways_on_one_database_start_one_run_per_due_time(
    make_gateway: MakeGateway, home: Path, database_url: str
) -> None:
    a = make_gateway(**QUICK)
    (home / "b").mkdir()
    b = GatewayProcess(home / "b", env={"TETHER_DATABASE_URL": database_url, **QUICK})
    b.start()
    try:
        async with await connect_ipc(a.socket) as via_a, await connect_ipc(b.socket) as via_b:
            sid = await session_of(via_a)
            added = cli(home, *add_args("tick", sid, "say tick"))
            await asyncio.sleep(6.5)
            cli(home, "routines", "pause", "tick")
            await asyncio.sleep(1.0)  # what was submitted has become runs
            runs = await routine_runs(via_b, sid, "say tick")
            assert b.proc is not None
            assert b.proc.poll() is None  # both gateways were up all along
    finally:
        b.stop()
    a.stop()
    dues = await due_times(a, database_url, added["id"])
    assert len(dues) >= 2
    assert len(runs) == len(dues)  # each due time started exactly one run
    assert len(set(dues)) == len(dues)
    assert all(y - x >= 2 for x, y in itertools.pairwise(dues))


# ---- (d) pause, resume, remove -------------------------------------------------------------


async def test_pause_resume_and_remove_through_the_cli(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway(**QUICK)
    async with await connect_ipc(gw.socket) as c:
        sid = await session_of(c)
        cli(home, *add_args("tick", sid, "say tick"))
        await wait_runs(c, sid, "say tick", 1)
        paused = cli(home, "routines", "pause", "tick")
        assert (paused["state"], paused["next_fire_at"]) == ("paused", None)
        held = len(await routine_runs(c, sid, "say tick"))
        await asyncio.sleep(4.5)
        assert len(await routine_runs(c, sid, "say tick")) == held  # two due times passed
        table = run_cli(home, "routines", "list").stdout
        assert table.splitlines()[0].split() == [
            "NAME",
            "STATE",
            "CRON",
            "TZ",
            "NEXT",
            "SESSION",
            "OWNER",
            "LAST",
            "RUN",
        ]
        assert "paused" in table
        resumed = cli(home, "routines", "resume", "tick")
        assert resumed["state"] == "active"
        assert resumed["next_fire_at"] > time.time() - 1
        await wait_runs(c, sid, "say tick", held + 1)
        removed = cli(home, "routines", "remove", "tick")
        assert removed["name"] == "tick"
        assert cli(home, "routines", "list")["routines"] == []
        assert "no routine 'tick'" in refused(home, "routines", "remove", "tick")
        assert "no routine 'tick'" in refused(home, "routines", "pause", "tick")


# ---- (e) who may do what, and what is refused ----------------------------------------------


async def test_members_manage_only_their_own_routines_in_their_own_sessions(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway(**QUICK, **MEMBERS_MAY_SCRIPT)
    alice, bob = await add_user(gw, "alice"), await add_user(gw, "bob")
    vera = await add_user(gw, "vera", "viewer")
    url = ("--url", gw.url)
    as_alice, as_bob, as_vera = (
        {"TETHER_TOKEN": alice},
        {"TETHER_TOKEN": bob},
        {"TETHER_TOKEN": vera},
    )
    async with await as_user(gw, alice) as a, await as_user(gw, bob) as b:
        sid = await session_of(a)
        # bob may not schedule work in alice's session
        said = refused(home, *add_args("bobs", sid, "say hi"), *url, env=as_bob)
        assert "does not exist" in said
        # a viewer may not add routines at all
        assert "viewer may not" in refused(
            home, *add_args("veras", sid, "say hi"), *url, env=as_vera
        )
        mine = cli(home, *add_args("ask", sid, "ask ready?"), *url, env=as_alice)
        assert mine["owner_name"] == "alice"
        (run,) = await wait_runs(a, sid, "ask ready?", 1)
        # bob neither sees, pauses nor removes it
        assert cli(home, "routines", "list", *url, env=as_bob)["routines"] == []
        for verb in ("pause", "resume", "remove"):
            assert "no routine 'ask'" in refused(home, "routines", verb, "ask", *url, env=as_bob)
        # its run is alice's: she decides its request; bob cannot
        request = await open_request(a, run.id)
        found = await b.call(REQUEST_LIST, RequestListParams(run_id=run.id))
        assert found.requests == []
        # the owner sees everyone's
        (seen,) = cli(home, "routines", "list")["routines"]
        assert (seen["name"], seen["owner_name"]) == ("ask", "alice")
        cli(home, "routines", "remove", "ask", *url, env=as_alice)
        answered = await resolve(a, request.handle, answer="yes")
        assert answered.state == "answered"
        done = await r.wait_state(a, run.id)
        assert (done.state, done.output) == ("succeeded", "yes")
    assert cli(home, "routines", "list")["routines"] == []


async def test_bad_schedules_and_input_are_refused_with_a_clear_message(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway(**QUICK)
    async with await connect_ipc(gw.socket) as c:
        sid = await session_of(c)
    base = ("routines", "add", "bad", "--session", sid, "--input", "say hi")
    assert "invalid cron expression '61 * * * *'" in refused(home, *base, "--cron", "61 * * * *")
    assert "has 7 fields" in refused(home, *base, "--cron", "* * * * * * *")
    assert "unknown time zone 'Mars/Base'" in refused(
        home, *base, "--cron", "@daily", "--tz", "Mars/Base"
    )
    said = refused(
        home, "routines", "add", "bad", "--cron", "@daily", "--session", sid, "--input", "/new"
    )
    assert "may not be a / command" in said
    assert "does not exist" in refused(
        home,
        "routines",
        "add",
        "bad",
        "--cron",
        "@daily",
        "--session",
        "ses_nothing",
        "--input",
        "x",
    )
    cli(home, "routines", "add", "good", "--cron", "@daily", "--session", sid, "--input", "say hi")
    assert "already exists" in refused(
        home, "routines", "add", "good", "--cron", "@daily", "--session", sid, "--input", "say hi"
    )
    assert [x["name"] for x in cli(home, "routines", "list")["routines"]] == ["good"]
    # and /routines in the session's chat lists it, with when it is next due
    async with await connect_ipc(gw.socket) as c:
        for lang, heading, next_word in (
            ("en", "Routines of this session", "next"),
            ("zh", "本会话的定时任务", "下次"),
        ):
            sent = await c.call(
                CHAT_SEND,
                ChatSendParams(text="/routines", event_id=f"r-{lang}", session_id=sid, lang=lang),
            )
            (reply,) = sent.replies
            assert reply.startswith(heading), reply
            assert f"good  @daily (UTC)  {next_word} " in reply
