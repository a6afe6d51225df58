"""The webhook channel end to end: signed messages in, runs with approvals on a real
runner, replies POSTed to a stand-in; duplicates, strangers, groups, busy sessions,
``/stop``, a restart, and the chat API on the same session."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.people import MEMBERS_MAY_SCRIPT, add_user, as_user
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tests.support.webhook import SECRET, SECRET_ENV, WebhookStandIn, config_toml, event, post
from tether.protocol.chat import ChatSendParams
from tether.protocol.methods import CHAT_SEND, RUN_LIST, SESSION_GET
from tether.protocol.runs import RunListParams, SessionGetParams

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


def gateway_with_hook(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn, **env: str
) -> GatewayProcess:
    config_toml(
        home / "config",
        hook.url,
        defaults=env.pop("defaults", ""),
        agent=env.pop("agent", "operator"),
    )
    return make_gateway(**{SECRET_ENV: SECRET, **env})


def link(gw: GatewayProcess, user: str, sender: str) -> None:
    done = run_cli(gw.home, "users", "link", user, "--channel", "webhook.ops", "--id", sender)
    assert done.returncode == 0, done.stderr


async def settled(gw: GatewayProcess, timeout: float = 20) -> list[Any]:
    """Every run, once none is active any more (bounded)."""
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        for _ in range(int(timeout * 10)):
            runs = (await admin.call(RUN_LIST, RunListParams())).runs
            if all(r.state in ("succeeded", "failed", "cancelled", "expired") for r in runs):
                return list(runs)
            await asyncio.sleep(0.1)
    raise AssertionError(f"runs still active: {[(r.id, r.state) for r in runs]}")


def handle_of(delivery: dict[str, Any]) -> str:
    assert delivery["kind"] == "request", delivery
    return str(delivery["request"])


async def test_a_signed_message_runs_asks_is_approved_from_the_chat_and_is_answered(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")

    status, answer = await post(gw.url, event("e1", "!echo hi > out.txt && echo done"))
    assert (status, answer) == (200, {"ok": True, "duplicate": False})
    asked = await hook.wait_for(lambda d: d["kind"] == "request")
    handle = handle_of(asked)
    assert f"/approve {handle}" in asked["text"]
    assert "echo hi" in asked["text"]
    assert asked["chat"] == {"id": "c1", "thread": None}
    assert not (home / "ws-box" / "out.txt").exists()  # nothing ran before the approval

    # the same event again (the platform retried): acknowledged, dropped
    status, answer = await post(gw.url, event("e1", "!echo hi > out.txt && echo done"))
    assert (status, answer["duplicate"]) == (200, True)

    assert (await post(gw.url, event("e2", f"/approve {handle}")))[0] == 200
    reply = await hook.wait_for(lambda d: d["kind"] == "reply")
    assert "done" in reply["text"]
    assert reply["reply_to"] == "msg-e1"  # threaded under the message that asked
    assert (home / "ws-box" / "out.txt").read_text() == "hi\n"
    decided = [d["text"] for d in hook.received if d["kind"] == "notice" and handle in d["text"]]
    # the command's answer, and the decision said in the chat by name
    assert sorted(decided) == sorted(
        [f"{handle}: allowed once.", f"[{handle}] allowed once (alice)."]
    )
    # signed, with the idempotency key in a header; one reply for the one run
    assert hook.refused == 0
    keys = [h["Idempotency-Key"] for h in hook.headers]
    assert len(keys) == len(set(keys))
    await asyncio.sleep(0.5)
    assert [d["kind"] for d in hook.received].count("reply") == 1
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        runs = (await admin.call(RUN_LIST, RunListParams())).runs
    assert len(runs) == 1
    assert runs[0].state == "succeeded"
    assert runs[0].created_by is not None
    assert runs[0].created_by.startswith("usr_")


async def test_a_stranger_is_refused_once_and_starts_nothing_until_paired(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    for i in range(3):
        assert (await post(gw.url, event(f"s{i}", "!touch pwned", sender="u-eve")))[0] == 200
    refusal = await hook.wait_for(lambda d: "only answer people I know" in d["text"])
    assert "--channel webhook.ops --id u-eve" in refusal["text"]
    await asyncio.sleep(1.0)
    assert len(hook.received) == 1  # one polite refusal, not one per message
    assert not (home / "ws-box" / "pwned").exists()
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        assert (await admin.call(RUN_LIST, RunListParams())).runs == []

    # a wrong code is refused (and says nothing more: the refusal was just sent)
    await post(gw.url, event("p0", "/pair AAAA-BBBB-CCCC-DDDD", sender="u-eve"))
    await add_user(gw, "erin")
    made = run_cli(gw.home, "--json", "users", "pair", "erin")
    assert made.returncode == 0, made.stderr
    code = json.loads(made.stdout)["code"]
    await post(gw.url, event("p1", f"/pair {code}", sender="u-erin"))
    await hook.wait_for(lambda d: "Paired: you are erin" in d["text"])
    # the code works once
    await post(gw.url, event("p2", f"/pair {code}", sender="u-mallory"))
    await post(gw.url, event("p3", "!echo hello", sender="u-mallory"))
    await post(gw.url, event("p4", "/status", sender="u-erin"))
    status = await hook.wait_for(lambda d: d["text"].startswith("Session ses_"))
    assert "operator" in status["text"]
    await asyncio.sleep(0.5)
    assert not any("hello" in t for t in hook.texts())
    listed = run_cli(gw.home, "--json", "users", "list")
    (erin,) = [u for u in json.loads(listed.stdout)["users"] if u["name"] == "erin"]
    assert erin["links"] == ["webhook.ops:u-erin"]


async def test_bad_signatures_and_stale_timestamps_are_refused_and_nothing_is_recorded(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    body = event("b1", "/status")
    now = time.time()
    refused = [
        await post(gw.url, body, signed=False),
        await post(gw.url, body, secret="another-secret-" + "y" * 40),
        await post(gw.url, body, timestamp=now - 301),
        await post(gw.url, body, timestamp=now + 301),
        await post(gw.url, body, headers={"X-Tether-Signature": "sha256=" + "0" * 64}),
        await post(gw.url, body, headers={"X-Tether-Signature": "md5=abc"}),
        await post(gw.url, body, headers={"X-Tether-Timestamp": "yesterday"}),
        # a signature for another body
        await post(
            gw.url,
            json.dumps(body).encode() + b" ",
            headers={"X-Tether-Signature": (await _signature_of(body))},
        ),
        await post(gw.url, body, name="other"),  # no such channel
    ]
    assert [s for s, _ in refused] == [401] * 8 + [404]
    assert all(a.get("error") == "unauthorized" for _, a in refused[:8])
    # a signed body that is not an event
    status, answer = await post(gw.url, {"event_id": "x", "text": "no chat, no sender"})
    assert (status, answer["error"]) == (400, "invalid_params")
    await asyncio.sleep(0.5)
    assert hook.received == []
    # nothing was recorded: the same event id, signed right, is new
    status, answer = await post(gw.url, body)
    assert (status, answer["duplicate"]) == (200, False)
    await hook.wait_for(lambda d: d["text"].startswith("Session "))


async def _signature_of(body: dict[str, Any]) -> str:
    from tether.channels.webhook.events import SIGNATURE_HEADER, sign

    return sign(SECRET.encode(), json.dumps(body).encode(), time.time())[SIGNATURE_HEADER]


async def test_a_channel_without_its_secret_refuses_everything(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    config_toml(home / "config", hook.url)
    gw = make_gateway()  # the secret's environment variable is not set
    status, answer = await post(gw.url, event("n1", "/help"))
    assert status == 401
    assert "has no secret" in answer["message"]
    assert "webhook channel has no secret" in gw.stderr()


async def test_groups_answer_only_when_addressed_and_topics_are_sessions_of_their_own(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    await post(gw.url, event("g1", "help", chat="g", group=True))  # not addressed
    await post(gw.url, event("g2", "hello all", chat="g", group=True, sender="u-eve"))
    await asyncio.sleep(1.0)
    assert hook.received == []  # ignored, strangers included: no refusal in a group
    await post(gw.url, event("g3", "@tether help", chat="g", group=True))
    first = await hook.wait_for(lambda d: d["kind"] == "reply")
    assert "operator: type what should run" in first["text"]
    await post(gw.url, event("g4", "help", chat="g", group=True, mentions=["tether"]))
    await post(
        gw.url,
        {
            **event("g5", "@tether help", chat="g", group=True),
            "chat": {"id": "g", "type": "group", "thread": "t1"},
        },
    )
    await hook.wait_for(lambda d: d["kind"] == "reply" and d["chat"]["thread"] == "t1")
    await asyncio.sleep(0.5)
    replies = [d for d in hook.received if d["kind"] == "reply"]
    assert len(replies) == 3
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        runs = (await admin.call(RUN_LIST, RunListParams())).runs
        sessions = {r.session_id for r in runs}
        assert len(runs) == 3
        assert len(sessions) == 2
        convs = set()
        for sid in sessions:
            convs.add(
                (await admin.call(SESSION_GET, SessionGetParams(session_id=sid))).conversation_id
            )
    assert convs == {"webhook.ops:g", "webhook.ops:g:t1"}


async def test_a_busy_session_queues_or_steers_and_says_which_and_stop_ends_all(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook, TETHER_CHANNELS__QUEUE_LIMIT="1")
    make_runner(gw)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    # the operator takes no steering: a second message queues, a third is refused
    await post(gw.url, event("q1", "!echo one"))
    await hook.wait_for(lambda d: d["kind"] == "request")  # the run waits for approval
    await post(gw.url, event("q2", "!echo two"))
    queued = await hook.wait_for(lambda d: d["text"].startswith("Queued"))
    assert "1 waiting" in queued["text"]
    assert queued["reply_to"] == "msg-q2"
    await post(gw.url, event("q3", "!echo three"))
    await hook.wait_for(lambda d: d["text"].startswith("The queue is full"))
    await post(gw.url, event("q4", "/stop"))
    await hook.wait_for(lambda d: d["text"] == "Stopped 2 run(s).")
    await hook.wait_for(lambda d: d["kind"] == "reply" and "stopped" in d["text"])
    runs = await settled(gw)
    assert sorted(r.state for r in runs) == ["cancelled", "cancelled"]
    assert not any("three" in r.input for r in runs)


async def test_steering_goes_to_a_run_that_takes_it_and_stop_ends_a_hung_agent(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(
        make_gateway,
        home,
        hook,
        agent="script",
        TETHER_RUNS__CANCEL_GRACE="1",
        **MEMBERS_MAY_SCRIPT,
    )
    make_runner(gw)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    await post(gw.url, event("t1", "steer 30"))
    await asyncio.sleep(1.0)
    await post(gw.url, event("t2", "more input"))
    await hook.wait_for(lambda d: d["text"].startswith("Added to the running task"))
    await post(gw.url, event("t3", "/stop"))
    await hook.wait_for(lambda d: d["text"] == "Stopped 1 run(s).")
    await hook.wait_for(lambda d: d["kind"] == "reply")

    await post(gw.url, event("t4", "hang"))
    await asyncio.sleep(1.0)
    await post(gw.url, event("t5", "/stop"))
    await hook.wait_for(lambda d: d["text"] == "Stopped 1 run(s).", timeout=10)
    runs = await settled(gw)
    assert [r.state for r in runs] == ["cancelled", "cancelled"]
    # a session whose last runs ended badly still takes new messages
    await post(gw.url, event("t6", "say still here"))
    await hook.wait_for(lambda d: d["kind"] == "reply" and d["text"] == "still here")


async def test_messages_received_before_a_restart_are_processed_never_dropped_as_old(
    make_gateway: MakeGateway,
    home: Path,
    hook: WebhookStandIn,
    database_url: str | None,
) -> None:
    from tether.channels import InboundMessage, Sender
    from tether.config import LedgerConfig
    from tether.gateway.router import Pending
    from tether.ledger import Ledger

    gw = gateway_with_hook(make_gateway, home, hook)
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    gw.kill()  # kill -9
    # a message the gateway acknowledged (its receipt is durable) but never processed
    old = InboundMessage(
        channel="webhook.ops",
        event_id="r1",
        chat_id="c1",
        sender=Sender(id="u-alice"),
        text="help",
        message_id="msg-r1",
        addressed=True,
        sent_at=time.time() - 86_400,
    )
    ledger = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)
    try:
        import msgspec

        body = msgspec.json.encode(Pending(message=old)).decode()
        assert await ledger.conversations.record(
            "webhook.ops", "r1", message=body, message_id="msg-r1", conversation_id="webhook.ops:c1"
        )
    finally:
        await ledger.aclose()
    # and one the platform could not deliver while the gateway was down: it retries
    late = event("r2", "/status", sent_at=time.time() - 3_600)
    with pytest.raises(OSError):
        await post(gw.url, late)
    gw.start()
    reply = await hook.wait_for(lambda d: d["kind"] == "reply")
    assert reply["reply_to"] == "msg-r1"
    assert "operator" in reply["text"]
    assert (await post(gw.url, late))[0] == 200
    await hook.wait_for(lambda d: d["text"].startswith("Session "))
    assert (await post(gw.url, event("r1", "help")))[1]["duplicate"] is True


async def test_messages_a_dead_gateway_had_claimed_are_taken_up_at_once_or_once_stale(
    make_gateway: MakeGateway,
    home: Path,
    hook: WebhookStandIn,
    database_url: str | None,
) -> None:
    """A claim of this gateway's earlier incarnation is dead at once (it restarted);
    another gateway's is taken over once it is ``receipt_stale`` old, while this one runs,
    not only at its next start."""
    import msgspec

    from tether.channels import InboundMessage, Sender
    from tether.config import LedgerConfig
    from tether.gateway.router import Pending
    from tether.ledger import Ledger

    gw = gateway_with_hook(
        make_gateway,
        home,
        hook,
        TETHER_RUNS__NODE_ID="gw-a",
        TETHER_CHANNELS__RECEIPT_STALE="2",
    )
    await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    gw.kill()  # kill -9, as if between the receipt and the run

    def claimed(event_id: str) -> str:
        message = InboundMessage(
            channel="webhook.ops",
            event_id=event_id,
            chat_id="c1",
            sender=Sender(id="u-alice"),
            text="/status",
            message_id=f"msg-{event_id}",
            addressed=True,
        )
        return msgspec.json.encode(Pending(message=message)).decode()

    ledger = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)

    async def record(event_id: str, owner: str, at: float) -> None:
        assert await ledger.conversations.record(
            "webhook.ops",
            event_id,
            message=claimed(event_id),
            message_id=f"msg-{event_id}",
            conversation_id="webhook.ops:c1",
            claimed_by=owner,
            now=at,
        )

    try:
        # claimed for the next minute: were it taken for being stale, it would wait that long
        await record("mine", "gw-a:inc_dead", time.time() + 60)
        gw.start()
        mine = await hook.wait_for(lambda d: d.get("reply_to") == "msg-mine")
        assert mine["text"].startswith("Session ")
        # a message another gateway claims, then dies on, while this one runs: the sweep
        # takes it up once the claim is stale (2 s here), not only at the next start
        await record("theirs", "gw-b:inc_gone", time.time())
        theirs = await hook.wait_for(lambda d: d.get("reply_to") == "msg-theirs")
        assert theirs["text"].startswith("Session ")
        await asyncio.sleep(2.5)  # another sweep or two: nothing twice
        answers = [d.get("reply_to") for d in hook.received if d.get("reply_to")]
        assert sorted(answers) == ["msg-mine", "msg-theirs"]
        for event_id in ("mine", "theirs"):
            done = await ledger.conversations.get_receipt("webhook.ops", event_id)
            assert done.status == "done"
            assert done.claimed_by is not None
            assert done.claimed_by.startswith("gw-a:")
            assert done.claimed_by != "gw-a:inc_dead"
    finally:
        await ledger.aclose()


async def test_a_run_started_through_the_chat_api_is_seen_by_the_webhook_conversation(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    token = await add_user(gw, "alice")
    link(gw, "alice", "u-alice")
    await post(gw.url, event("h1", "/status"))
    status = await hook.wait_for(lambda d: d["text"].startswith("Session "))
    session_id = re.search(r"Session (ses_\w+)", status["text"]).group(1)  # type: ignore[union-attr]
    alice = await as_user(gw, token)
    other = await as_user(gw, await add_user(gw, "bob"))
    try:
        sent = await alice.call(
            CHAT_SEND,
            ChatSendParams(session_id=session_id, text="!echo from-terminal", event_id="k1"),
        )
        assert (sent.disposition, sent.session_id, sent.duplicate) == ("started", session_id, False)
        asked = await hook.wait_for(lambda d: d["kind"] == "request")
        assert asked["run_id"] == sent.run_id  # the chat sees the terminal's request
        again = await alice.call(
            CHAT_SEND,
            ChatSendParams(session_id=session_id, text="!echo from-terminal", event_id="k1"),
        )
        assert (again.duplicate, again.run_id) == (True, sent.run_id)
        # the request is decided from the terminal, and the reply reaches the chat
        decided = await alice.call(
            CHAT_SEND,
            ChatSendParams(
                conversation="webhook.ops:c1", text=f"/approve {asked['request']}", event_id="k2"
            ),
        )
        assert decided.disposition == "command"
        assert "allowed once" in decided.replies[0]
        reply = await hook.wait_for(lambda d: d["kind"] == "reply" and d["run_id"] == sent.run_id)
        assert "from-terminal" in reply["text"]
        # another member sees none of it
        from tether.errors import NotFound

        with pytest.raises(NotFound):
            await other.call(
                CHAT_SEND, ChatSendParams(session_id=session_id, text="!id", event_id="z")
            )
        with pytest.raises(NotFound):
            await other.call(
                CHAT_SEND, ChatSendParams(conversation="webhook.ops:c1", text="!id", event_id="z")
            )
        # a surface's own conversation: commands answer in the result
        mine = await alice.call(CHAT_SEND, ChatSendParams(text="/status", event_id="k3", lang="zh"))
        assert mine.disposition == "command"
        assert mine.replies[0].startswith("会话 ses_")
        assert mine.session_id != session_id
    finally:
        await alice.aclose()
        await other.aclose()


async def test_commands_answer_in_the_senders_language_and_never_start_runs(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    await add_user(gw, "alice")
    await add_user(gw, "vera", "viewer")
    link(gw, "alice", "u-alice")
    link(gw, "vera", "u-vera")
    said = 0

    async def ask(text: str, sender: str = "u-alice", **more: Any) -> str:
        nonlocal said
        said += 1
        n = len(hook.received)
        await post(gw.url, event(f"c{said}", text, sender=sender, **more))
        await hook.wait_for(lambda d: hook.received.index(d) >= n)
        return str(hook.received[n]["text"])

    assert (await ask("/frobnicate")).startswith("Unknown command /frobnicate.")
    assert "/approve HANDLE" in await ask("/help")
    assert (await ask("/help", lang="zh")).startswith("发送消息即在本会话中开始一次运行")
    assert (await ask("/模式 问")).startswith("未知命令")
    assert (await ask("/runs")).startswith("还没有运行")  # the conversation's language now
    assert "available: ask, auto-read, auto" in await ask("/mode", lang="en")
    assert await ask("/mode ask") == "mode set to ask."
    assert "runner: box" in await ask("/runner")
    assert "app" in await ask("/workspace")
    assert "operator" in await ask("/agent")
    assert "script" not in await ask("/agent")  # a fixture is not offered
    assert (await ask("/agent nosuch")).startswith("Could not do that: unknown agent")
    first = re.search(r"Session (ses_\w+)", await ask("/status")).group(1)  # type: ignore[union-attr]
    fresh = await ask("/new")
    assert fresh.startswith("New session ses_")
    assert first not in fresh
    assert "mode auto-read" in fresh  # the conversation's defaults, not the old session's
    assert await ask("/runs") == "No runs yet."
    assert (await ask("/approve")).startswith("Usage: /approve HANDLE")
    assert (await ask("/deny zzzz")).startswith("Could not do that: no request")
    # a viewer reads but starts and changes nothing
    assert "viewer" in await ask("!touch x", sender="u-vera")
    assert "viewer" in await ask("/mode auto", sender="u-vera")
    assert (await ask("/status", sender="u-vera")).startswith("Session ")
    # // sends a leading / to the agent (the operator's own /ls)
    listing = await ask("//ls")
    assert listing.startswith("Could not do that") is False
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        runs = (await admin.call(RUN_LIST, RunListParams())).runs
    assert len(runs) == 1
    assert runs[0].input == "/ls"


async def test_in_a_group_only_a_permitted_person_decides_and_no_one_is_told_unseen(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, hook: WebhookStandIn
) -> None:
    from tether.protocol.methods import RUN_EVENTS
    from tether.protocol.runs import RunEventsParams

    gw = gateway_with_hook(make_gateway, home, hook)
    make_runner(gw)
    await add_user(gw, "alice")
    await add_user(gw, "bob")
    link(gw, "alice", "u-alice")
    link(gw, "bob", "u-bob")
    group = {"chat": "g", "group": True}
    await post(gw.url, event("a1", "@tether !echo alice-ran > ran.txt", **group))  # type: ignore[arg-type]
    handle = handle_of(await hook.wait_for(lambda d: d["kind"] == "request"))
    await post(gw.url, event("a2", f"@tether /approve {handle}", sender="u-bob", **group))  # type: ignore[arg-type]
    refused = await hook.wait_for(lambda d: d["reply_to"] == "msg-a2")
    assert refused["text"].startswith("Could not do that")
    await asyncio.sleep(0.5)
    assert not (home / "ws-box" / "ran.txt").exists()
    await post(gw.url, event("a3", f"@tether /approve {handle}", **group))  # type: ignore[arg-type]
    await hook.wait_for(lambda d: d["kind"] == "reply")
    assert (home / "ws-box" / "ran.txt").read_text() == "alice-ran\n"
    (run,) = await settled(gw)
    async with await as_user(gw, gw.admin_token, role="admin") as admin:
        page = await admin.call(RUN_EVENTS, RunEventsParams(run_id=run.id))
    kinds = [e.kind for e in page.events]
    assert "approval.resolved" in kinds
    assert "request.unseen" not in kinds


async def test_an_oversized_body_is_refused_before_it_is_read(
    make_gateway: MakeGateway, home: Path, hook: WebhookStandIn
) -> None:
    gw = gateway_with_hook(
        make_gateway,
        home,
        hook,
        TETHER_LIMITS__MAX_FRAME_BYTES="65536",
        TETHER_LEDGER__INLINE_PAYLOAD_BYTES="32768",
    )
    big = event("big", "x" * 70_000)
    status, _ = await post(gw.url, big)
    assert status == 413
    assert (await post(gw.url, event("big", "/help")))[1]["duplicate"] is False
