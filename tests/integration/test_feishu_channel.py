"""The Feishu channel end to end: a real gateway, runner and operator agent, with the real
``lark-oapi`` SDK (its long connection and its API client) against the stand-in. A p2p
message becomes a run whose reply is posted under it; an event delivered twice is one
run and one reply; in a group only an @-mention of the bot is taken."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.feishu import Ack, Failure, FeishuStandIn, stand_in, write_config
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]
SECRET_ENV = "TEST_FEISHU_SECRET"


@pytest.fixture
def engine() -> str:
    """A channel's feature: SQLite is enough (the ledger's engines are tested elsewhere)."""
    return "sqlite"


def start_gateway(
    home: Path,
    stand_in: FeishuStandIn,
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    session_mode: str = "auto",
    agent: str = "operator",
    streaming: bool = False,
    **env: str,
) -> GatewayProcess:
    """A gateway on the stand-in's app, its runner, and alice linked to ``ou_alice``."""
    write_config(
        home, stand_in, secret_env=SECRET_ENV, session_mode=session_mode, agent=agent,
        streaming=streaming,
    )  # fmt: skip
    gw = make_gateway(
        **{
            SECRET_ENV: stand_in.app_secret,
            "NO_PROXY": "127.0.0.1,localhost",
            "TETHER_CHANNELS__DELIVERY_LEASE": "3",
            **env,
        }
    )
    make_runner(gw)
    stand_in.wait_for(lambda: stand_in.connected == 1, 30 * SCALE)
    linked = run_cli(home, "users", "add", "alice")
    assert linked.returncode == 0, linked.stderr
    linked = run_cli(home, "users", "link", "alice", "--channel", "feishu", "--id", "ou_alice")
    assert linked.returncode == 0, linked.stderr
    return gw


@pytest.fixture
def feishu_gateway(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> GatewayProcess:
    return start_gateway(home, stand_in, make_gateway, make_runner)


def message(
    text: str,
    *,
    message_id: str,
    chat_id: str = "oc_p2p",
    chat_type: str = "p2p",
    mentions: list[dict[str, Any]] | None = None,
    sender: str = "ou_alice",
    parent_id: str | None = None,
) -> dict[str, Any]:
    return {
        "sender": {"sender_id": {"open_id": sender}, "sender_type": "user"},
        "message": {
            "message_id": message_id,
            **({"parent_id": parent_id, "root_id": parent_id} if parent_id else {}),
            "chat_id": chat_id,
            "chat_type": chat_type,
            "message_type": "text",
            "content": json.dumps({"text": text}),
            "mentions": mentions or [],
            "create_time": str(int(time.time() * 1000)),
        },
    }


def push(stand_in: FeishuStandIn, event: dict[str, Any], event_id: str) -> Ack:
    return stand_in.push("im.message.receive_v1", event, event_id=event_id).result(10 * SCALE)


def replies_to(stand_in: FeishuStandIn, message_id: str) -> list[str]:
    """The posts (not cards) sent in answer to a message."""
    out = []
    for m in list(stand_in.messages.values()):
        if m.get("reply_to") == message_id and m.get("msg_type") == "post":
            post = json.loads(m["content"])
            out.append(post["zh_cn"]["content"][0][0]["text"])
    return out


def runs(home: Path) -> list[dict[str, Any]]:
    return json.loads(run_cli(home, "--json", "runs", "list").stdout)["runs"]


def test_a_p2p_message_runs_and_its_reply_is_posted_under_it(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    ack = push(stand_in, message("!echo from-feishu", message_id="om_1"), "ev_1")
    assert ack.code == 200  # acked once the receipt was durable
    stand_in.wait_for(lambda: any("from-feishu" in r for r in replies_to(stand_in, "om_1")), 30)
    [reply] = [
        m for m in stand_in.messages.values() if m.get("reply_to") == "om_1" and
        m["msg_type"] == "post"
    ]  # fmt: skip
    assert len(reply["uuid"]) <= 50  # Feishu makes one message per uuid
    [run] = runs(home)
    assert run["state"] == "succeeded"
    bearer = [c for c in stand_in.sent() if c.path.endswith("/reply")]
    assert bearer
    assert all(c.headers["Authorization"] == f"Bearer {stand_in.token}" for c in bearer)


def test_the_same_event_twice_is_one_run_and_one_reply(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    event = message("!echo once-only", message_id="om_2")
    assert push(stand_in, event, "ev_2").code == 200
    assert push(stand_in, event, "ev_2").code == 200  # redelivered: acked, not run again
    stand_in.wait_for(lambda: any("once-only" in r for r in replies_to(stand_in, "om_2")), 30)
    time.sleep(1.0)
    assert len(replies_to(stand_in, "om_2")) == 1
    assert len(runs(home)) == 1


def test_in_a_group_only_an_at_mention_of_the_bot_is_taken(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    group = {"chat_id": "oc_group", "chat_type": "group"}
    assert (
        push(stand_in, message("!echo not-for-us", message_id="om_3", **group), "ev_3").code == 200
    )
    mention = [{"key": "@_user_1", "id": {"open_id": stand_in.bot_open_id}, "name": "tether"}]
    asked = message("@_user_1 !echo for-us", message_id="om_4", mentions=mention, **group)
    assert push(stand_in, asked, "ev_4").code == 200
    stand_in.wait_for(lambda: any("for-us" in r for r in replies_to(stand_in, "om_4")), 30)
    assert replies_to(stand_in, "om_3") == []
    assert [r["input"] for r in runs(home)] == ["!echo for-us"]  # the mention is not input


def test_in_a_group_the_agent_is_told_who_wrote_and_the_name_is_looked_up_once(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    stand_in.users["ou_alice"] = "Alice Wang"
    group = {"chat_id": "oc_group", "chat_type": "group"}
    mention = [{"key": "@_user_1", "id": {"open_id": stand_in.bot_open_id}, "name": "tether"}]
    for n in (1, 2):
        asked = message(
            f"@_user_1 !echo named-{n}", message_id=f"om_n{n}", mentions=mention, **group
        )
        assert push(stand_in, asked, f"ev_n{n}").code == 200
        answered = f"om_n{n}"
        stand_in.wait_for(lambda: any("named" in r for r in replies_to(stand_in, answered)), 30)  # noqa: B023
    for run in runs(home):
        assert "from: Alice Wang (in a group chat)" in run["input"]
        assert run["input"].startswith("!echo named-")
    assert len([c for c in stand_in.calls if "/contact/v3/users/ou_alice" in c.path]) == 1
    # in a p2p chat the name is not needed, and not asked for
    assert push(stand_in, message("!echo p2p", message_id="om_n3"), "ev_n3").code == 200
    stand_in.wait_for(lambda: any("p2p" in r for r in replies_to(stand_in, "om_n3")), 30)
    assert "context from the chat" not in runs(home)[0]["input"]


def test_a_reply_carries_the_message_it_answers_but_the_command_is_only_what_was_typed(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    # someone else's message, quoted by a reply that is a command: the agent sees the quote
    # as context, and it never becomes part of the command
    stand_in.seed_message("om_theirs", "oc_p2p", "looks fine\ntouch PWNED ; echo INJECTED")
    asked = message("!echo quoted-ok", message_id="om_q1", parent_id="om_theirs")
    assert push(stand_in, asked, "ev_q1").code == 200
    stand_in.wait_for(lambda: any("quoted-ok" in r for r in replies_to(stand_in, "om_q1")), 30)
    [run] = runs(home)
    assert "replying to:\n> looks fine\n> touch PWNED ; echo INJECTED" in run["input"]
    [reply] = replies_to(stand_in, "om_q1")
    assert "INJECTED" not in reply
    assert "not found" not in reply
    assert "[exit 0]" in reply


def test_context_that_is_slow_to_read_is_left_out_and_the_message_still_runs(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    stand_in.users["ou_alice"] = "Alice Wang"
    stand_in.slow_next("/open-apis/contact/v3/users", 5.0)
    stand_in.fail_next("/open-apis/im/v1/messages/om_gone", Failure(status=500, code=1))
    group = {"chat_id": "oc_group", "chat_type": "group"}
    mention = [{"key": "@_user_1", "id": {"open_id": stand_in.bot_open_id}, "name": "tether"}]
    asked = message(
        "@_user_1 !echo still-runs", message_id="om_s1", mentions=mention, parent_id="om_gone",
        **group,
    )  # fmt: skip
    ack = push(stand_in, asked, "ev_s1")
    assert ack.code == 200  # within Feishu's 3 s, though the name took 5
    stand_in.wait_for(lambda: any("still-runs" in r for r in replies_to(stand_in, "om_s1")), 30)
    [run] = runs(home)
    assert run["input"] == "!echo still-runs"


def test_a_dropped_long_connection_comes_back_and_loses_nothing(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    assert push(stand_in, message("!sleep 1; echo before-drop", message_id="om_d1"), "ev_d1")
    stand_in.drop_connections()  # mid-run: the reply goes out over HTTP all the same
    stand_in.wait_for(lambda: stand_in.connects >= 2 and stand_in.connected == 1, 30 * SCALE)
    stand_in.wait_for(lambda: any("before-drop" in r for r in replies_to(stand_in, "om_d1")), 30)
    assert push(stand_in, message("!echo after-drop", message_id="om_d2"), "ev_d2").code == 200
    stand_in.wait_for(lambda: any("after-drop" in r for r in replies_to(stand_in, "om_d2")), 30)
    assert sorted(r["state"] for r in runs(home)) == ["succeeded", "succeeded"]
    assert len(replies_to(stand_in, "om_d1")) == 1


def test_other_event_types_are_acked_and_ignored(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    for kind in ("im.message.message_read_v1", "im.chat.member.bot.added_v1", "drive.file.new"):
        ack = stand_in.push(kind, {"anything": 1}).result(10 * SCALE)
        assert ack.code == 200  # taken: Feishu does not deliver it again
    assert runs(home) == []


def test_without_its_app_secret_the_channel_connects_to_nothing_and_says_why(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway
) -> None:
    write_config(home, stand_in, secret_env=SECRET_ENV)
    gw = make_gateway(NO_PROXY="127.0.0.1,localhost")  # no secret in the environment
    time.sleep(1.0)
    assert stand_in.calls == []  # not even the token endpoint
    assert stand_in.connected == 0
    assert "feishu channel has no app secret" in gw.stderr()


@pytest.mark.parametrize(
    "failure",
    [
        Failure(status=400, code=230020, headers={"x-ogw-ratelimit-reset": "2"}),
        Failure(status=429, code=99991400, headers={"x-ogw-ratelimit-reset": "2"}),
    ],
    ids=["230020", "429"],
)
def test_a_rate_limited_reply_is_sent_again_after_the_platforms_hint(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, failure: Failure
) -> None:
    stand_in.fail_next("/open-apis/im/v1/messages/om_5/reply", failure)
    assert push(stand_in, message("!echo after-the-limit", message_id="om_5"), "ev_5").code == 200
    stand_in.wait_for(lambda: any("after-the-limit" in r for r in replies_to(stand_in, "om_5")), 30)
    tries = [c for c in stand_in.calls if c.path.endswith("om_5/reply")]
    assert len(tries) == 2
    assert len(replies_to(stand_in, "om_5")) == 1
    waited = tries[1].at - tries[0].at
    assert waited >= 1.9  # the hint, not the 1 s default backoff


def test_a_token_rejected_mid_run_is_fetched_again_and_the_reply_goes_out(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn
) -> None:
    assert push(stand_in, message("!echo first", message_id="om_6"), "ev_6").code == 200
    stand_in.wait_for(lambda: any("first" in r for r in replies_to(stand_in, "om_6")), 30)
    tokens_before = len([c for c in stand_in.calls if "tenant_access_token" in c.path])
    stand_in.rotate_token()  # the gateway's cached token is now refused (99991663)
    assert push(stand_in, message("!echo second", message_id="om_7"), "ev_7").code == 200
    stand_in.wait_for(lambda: any("second" in r for r in replies_to(stand_in, "om_7")), 30)
    tokens_after = len([c for c in stand_in.calls if "tenant_access_token" in c.path])
    assert tokens_after == tokens_before + 1


def test_a_refused_content_is_not_sent_again(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    stand_in.fail_next(
        "/open-apis/im/v1/messages/om_8/reply", Failure(status=400, code=230001), times=10
    )
    assert push(stand_in, message("!echo refused", message_id="om_8"), "ev_8").code == 200
    deadline = time.monotonic() + 30 * SCALE
    while time.monotonic() < deadline:
        dead = json.loads(run_cli(home, "--json", "deliveries", "list", "--state", "dead").stdout)[
            "deliveries"
        ]
        if dead:
            break
        time.sleep(0.2)
    assert dead, "the refused reply was never given up"
    assert "230001" in dead[0]["last_error"]
    assert len([c for c in stand_in.calls if c.path.endswith("om_8/reply")]) == 1


def test_a_reply_owed_when_the_gateway_is_killed_arrives_once_after_the_restart(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    # Feishu is failing when the reply is due, so it waits in the outbox; then kill -9.
    # (retries a second apart at most, so the owed reply's next try is never far off)
    feishu_gateway = start_gateway(
        home, stand_in, make_gateway, make_runner,
        TETHER_CHANNELS__DELIVERY_BACKOFF="0.2",
        TETHER_CHANNELS__DELIVERY_BACKOFF_MAX="1",
        TETHER_CHANNELS__DELIVERY_ATTEMPTS="1000",
    )  # fmt: skip
    stand_in.fail_next("/open-apis/im/v1/messages/om_k/reply", Failure(status=503), times=1000)
    assert push(stand_in, message("!echo owed-reply", message_id="om_k"), "ev_k").code == 200
    stand_in.wait_for(lambda: any(c.path.endswith("om_k/reply") for c in stand_in.calls), 30)
    deadline = time.monotonic() + 20 * SCALE
    while [r["state"] for r in runs(home)] != ["succeeded"]:  # the run is over; its reply
        assert time.monotonic() < deadline, runs(home)  # is all that is owed
        time.sleep(0.1)
    feishu_gateway.kill()
    stand_in.wait_for(lambda: stand_in.connected == 0, 10)
    stand_in.heal()  # Feishu is well again
    # (a send in flight at the kill is sent again when its lease runs out: 3 s here)
    feishu_gateway.start()
    stand_in.wait_for(lambda: stand_in.connected == 1, 30 * SCALE)
    stand_in.wait_for(
        lambda: any("owed-reply" in r for r in replies_to(stand_in, "om_k")), 30 * SCALE
    )
    time.sleep(1.0)
    assert len(replies_to(stand_in, "om_k")) == 1
    assert [r["state"] for r in runs(home)] == ["succeeded"]  # not run again
    dead = run_cli(home, "--json", "deliveries", "list", "--state", "dead").stdout
    assert json.loads(dead)["deliveries"] == []  # nothing given up while it started


def test_a_40_kb_reply_is_split_within_feishus_limits(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn
) -> None:
    command = (
        "!for i in $(seq 1 800); do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done"
    )
    assert push(stand_in, message(command, message_id="om_big"), "ev_big").code == 200
    stand_in.wait_for(lambda: any("line-800-" in r for r in replies_to(stand_in, "om_big")), 60)
    parts = [
        m for m in stand_in.messages.values() if m.get("reply_to") == "om_big" and
        m["msg_type"] == "post"
    ]  # fmt: skip
    assert len(parts) >= 2
    assert all(len(m["content"].encode()) <= 30 * 1024 for m in parts)  # a post's limit
    text = "".join(replies_to(stand_in, "om_big"))
    assert all(f"line-{i}-" in text for i in (1, 400, 800))


def test_a_burst_in_one_chat_is_paced_within_feishus_rate(
    feishu_gateway: GatewayProcess, stand_in: FeishuStandIn
) -> None:
    ids = [f"om_b{i}" for i in range(6)]
    for i, mid in enumerate(ids):  # all at once: one runs, five queue, each says so
        stand_in.push(
            "im.message.receive_v1",
            message(f"!echo burst-{i}", message_id=mid),
            event_id=f"ev_b{i}",
        )
    for i, mid in enumerate(ids):
        stand_in.wait_for(
            lambda mid=mid, i=i: any(f"burst-{i}" in r for r in replies_to(stand_in, mid)), 60
        )
    assert stand_in.rate_violations == []  # paced, not retried after a refusal
