"""The outbox against the webhook stand-in: retries that honour the platform's hints,
permanent errors given up visibly, redelivery after kill -9 (without running the agent
again), conversations that do not hold each other up, long replies split."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.people import add_user
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tests.support.webhook import SECRET, SECRET_ENV, WebhookStandIn, config_toml, event, post

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

QUICK = {"TETHER_CHANNELS__DELIVERY_BACKOFF": "0.2", "TETHER_CHANNELS__DELIVERY_LEASE": "2"}


async def start(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn, **env: str
) -> GatewayProcess:
    config_toml(home / "config", hook.url)
    gw = make_gateway(**{SECRET_ENV: SECRET, **QUICK, **env})
    await add_user(gw, "alice")
    done = run_cli(gw.home, "users", "link", "alice", "--channel", "webhook.ops", "--id", "u-alice")
    assert done.returncode == 0, done.stderr
    return gw


async def deliveries(gw: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    """``tether deliveries list`` (in a thread: the stand-in keeps serving meanwhile)."""
    listed = await asyncio.to_thread(run_cli, gw.home, "--json", "deliveries", "list", *args)
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["deliveries"])


def replies(hook: WebhookStandIn) -> list[dict[str, Any]]:
    return [d for d in hook.received if d["kind"] == "reply"]


async def test_a_rate_limit_then_a_server_error_are_retried_and_it_lands_once_after_the_hint(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook)
    hook.answers = [(429, {"Retry-After": "2"}), (500, {})]
    await post(gw.url, event("e1", "help"))
    await hook.wait_for(lambda d: d["kind"] == "reply")
    tries = [(t, status) for t, key, status in hook.attempts]
    assert [s for _, s in tries] == [429, 500, 200]
    assert tries[1][0] - tries[0][0] >= 2.0  # the platform's hint was honoured
    await asyncio.sleep(1.0)
    assert len(replies(hook)) == 1
    (reply,) = await deliveries(gw, "--state", "delivered")
    assert (reply["attempts"], reply["platform_message_id"]) == (3, "m1")


async def test_a_permanent_error_is_not_retried_and_is_given_up_visibly(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook)
    hook.answers = [(400, {})]
    await post(gw.url, event("e1", "help"))
    said = await hook.wait_for(lambda d: "could not be delivered" in d["text"])
    assert "refused: HTTP 400" in said["text"]
    (dead,) = await deliveries(gw, "--state", "dead")
    assert (dead["kind"], dead["attempts"]) == ("reply", 1)
    assert dead["last_error"].startswith("refused: HTTP 400")
    await asyncio.sleep(1.0)
    assert [s for _, _, s in hook.attempts] == [400, 200]  # never tried again


async def test_a_delivery_that_keeps_failing_is_given_up_after_its_attempts(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook, TETHER_CHANNELS__DELIVERY_ATTEMPTS="3")
    hook.answers = [(503, {})] * 3
    await post(gw.url, event("e1", "help"))
    said = await hook.wait_for(lambda d: "could not be delivered" in d["text"])
    assert "gave up after 3 attempts" in said["text"]
    assert [s for _, _, s in hook.attempts] == [503, 503, 503, 200]


async def test_one_conversations_failing_endpoint_does_not_hold_up_another(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook)
    hook.failing["stuck"] = 503
    await post(gw.url, event("s1", "help", chat="stuck"))
    await post(gw.url, event("s2", "/status", chat="stuck"))
    for _ in range(200):  # both recorded, and the head retried (bounded)
        stuck = await deliveries(gw, "--conversation", "webhook.ops:stuck")
        if len(stuck) == 2 and stuck[0]["attempts"] >= 2:
            break
        await asyncio.sleep(0.1)
    await post(gw.url, event("f1", "help", chat="fine"))
    await post(gw.url, event("f2", "/runs", chat="fine"))
    await hook.wait_for(lambda d: d["chat"]["id"] == "fine" and d["kind"] == "reply")
    await hook.wait_for(lambda d: d["chat"]["id"] == "fine" and "run" in d["text"].lower())
    assert not [d for d in hook.received if d["chat"]["id"] == "stuck"]
    stuck = await deliveries(gw, "--conversation", "webhook.ops:stuck")
    assert stuck[0]["state"] in ("pending", "sending")  # the head, being retried
    assert stuck[1]["state"] == "pending"  # in order, behind the head
    assert stuck[0]["attempts"] >= 2
    assert stuck[1]["attempts"] == 0
    hook.failing.clear()
    await hook.wait_for(lambda d: d["chat"]["id"] == "stuck" and d["kind"] == "reply")
    await hook.wait_for(lambda d: d["chat"]["id"] == "stuck" and d["text"].startswith("Session"))
    order = [d["kind"] for d in hook.received if d["chat"]["id"] == "stuck"]
    assert order == [d["kind"] for d in stuck]  # in the order they were recorded


async def test_a_reply_owed_at_a_kill_is_sent_once_after_the_restart_and_the_run_is_not_redone(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn, database_url: str | None
) -> None:
    from tether.config import LedgerConfig
    from tether.ledger import Ledger

    gw = await start(make_gateway, home, hook)
    # 1. killed while the platform sits on the delivery: the lease runs out, it is resent
    hook.stall = 5.0
    await post(gw.url, event("k1", "help"))
    for _ in range(100):
        if await deliveries(gw, "--state", "sending"):
            break
        await asyncio.sleep(0.1)
    gw.kill()
    hook.stall = 0.0
    gw.start()
    first = await hook.wait_for(lambda d: d["kind"] == "reply", timeout=30)
    # 2. killed after the run ended but before its reply was recorded: the restarted
    #    gateway finds what the run said and owes, and sends it (once)
    await post(gw.url, event("k2", "/read nothing-here"))
    await hook.wait_for(lambda d: d["kind"] == "reply" and d["run_id"] != first["run_id"])
    second = replies(hook)[-1]
    gw.kill()
    ledger = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)
    try:
        # as if it had never been recorded: the gateway died between the event and it
        async with ledger.db.engine.begin() as conn:
            from sqlalchemy import delete

            from tether.ledger.schema import deliveries as table

            await conn.execute(delete(table).where(table.c.run_id == second["run_id"]))
        runs_before = {r.id: r.attempts for r in (await ledger.runs.list(limit=10))[0]}
    finally:
        await ledger.aclose()
    gw.start()
    for _ in range(200):
        if len([d for d in replies(hook) if d["run_id"] == second["run_id"]]) == 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    per_run: dict[str, int] = {}
    for d in replies(hook):
        per_run[d["run_id"]] = per_run.get(d["run_id"], 0) + 1
    # the first: once (the hung attempt never landed); the second: once more after the loss
    assert per_run == {first["run_id"]: 1, second["run_id"]: 2}
    ledger = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)
    try:
        runs_after = {r.id: r.attempts for r in (await ledger.runs.list(limit=10))[0]}
    finally:
        await ledger.aclose()
    assert runs_after == runs_before  # no run started again
    first_key = next(key for _, key, status in hook.attempts if status == 200)
    tried = [status for _, key, status in hook.attempts if key == first_key]
    assert tried.count(200) == 1  # landed once (the hung attempt never did), under one key
    owed = await deliveries(gw, "--run", first["run_id"])
    assert [(d["kind"], d["state"]) for d in owed] == [("reply", "delivered")]


async def test_a_long_reply_is_split_within_the_limit_in_order(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook)
    make_runner(gw)
    lines = [f"paragraph {p} line {i} " + "x" * 60 for p in range(60) for i in range(10)]
    text = "\n".join(lines)[:40_000]
    (home / "ws-box" / "big.txt").write_text(text)
    await post(gw.url, event("l1", "/read big.txt"))
    await hook.wait_for(lambda d: d["kind"] == "reply" and str(d["delivery"]).endswith("#2"))
    pieces = replies(hook)
    assert all(len(p["text"].encode()) <= 16_000 for p in pieces)
    assert [p["delivery"].rsplit("#", 1)[-1] for p in pieces][1:] == ["1", "2"]
    joined = "".join(p["text"] for p in pieces).replace("\n", "")
    assert text.replace("\n", "") in joined


async def test_failures_reach_the_chat_in_words_in_the_senders_language(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = await start(make_gateway, home, hook)
    make_runner(gw, start=False)  # enrolled, never started: offline
    await post(gw.url, event("o1", "/read README.md"))
    said = await hook.wait_for(lambda d: d["text"].startswith("A tool call did not run"))
    assert "the runner is offline; start it on its machine with `tether runner`" in said["text"]
    await post(gw.url, event("o2", "/read 说明.md", chat="zh"))
    zh = await hook.wait_for(lambda d: d["chat"]["id"] == "zh" and d["kind"] == "notice")
    assert zh["text"].startswith("有一个工具调用未执行：运行器离线")


async def test_a_fast_streaming_run_edits_one_status_message_within_the_rate(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    from tests.support.people import MEMBERS_MAY_SCRIPT

    config_toml(
        home / "config",
        hook.url,
        agent="script",
        channel='status = "edit"\nedit_interval = 1.0',
    )
    gw = make_gateway(**{SECRET_ENV: SECRET, **QUICK, **MEMBERS_MAY_SCRIPT})
    await add_user(gw, "alice")
    run_cli(gw.home, "users", "link", "alice", "--channel", "webhook.ops", "--id", "u-alice")
    script = "\n".join(["events 40 32", "sleep 0.25"] * 12 + ["say streamed"])
    await post(gw.url, event("st1", script))
    await hook.wait_for(lambda d: d["kind"] == "reply", timeout=30)
    statuses = [
        (t, key) for t, key, status in hook.attempts if key.startswith("status:") and status == 200
    ]
    shown = [d for d in hook.received if d["kind"] == "status"]
    assert len(shown) == len(statuses) >= 3
    first = shown[0]
    assert first["edit"] is None  # the first creates the message ...
    assert all(d["edit"] == "m1" for d in shown[1:])  # ... every later one edits it
    times = [t for t, _ in statuses]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 0.95 for g in gaps)  # at most one edit a second, the final one too
    assert len(shown) <= 3 + (times[-1] - times[0]) / 1.0
    assert " done " in shown[-1]["text"]  # the final state always lands
    assert "writing" in " ".join(d["text"] for d in shown[:-1])


async def test_without_edits_a_status_is_a_new_message_only_when_something_changes(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    config_toml(home / "config", hook.url, channel='status = "messages"')
    gw = make_gateway(**{SECRET_ENV: SECRET, **QUICK})
    await add_user(gw, "alice")
    run_cli(gw.home, "users", "link", "alice", "--channel", "webhook.ops", "--id", "u-alice")
    make_runner(gw)
    (home / "ws-box" / "notes.txt").write_text("hello\n")
    await post(gw.url, event("m1", "/read notes.txt"))
    await hook.wait_for(lambda d: d["kind"] == "reply")
    shown = [d["text"] for d in hook.received if d["kind"] == "status"]
    assert [d["edit"] for d in hook.received if d["kind"] == "status"] == [None] * len(shown)
    assert len(shown) == 4  # started, the call started, the call ended, done
    assert "… read_file `notes.txt`" in shown[1]
    assert "✓ read_file `notes.txt`" in shown[2]
    assert " done " in shown[3]
    kinds = [d["kind"] for d in hook.received]
    assert kinds.index("reply") > len(shown) - 1  # the reply after the final status
