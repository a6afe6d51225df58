"""Feishu's webhook mode through a real gateway: the url_verification challenge, an
encrypted and signed event that runs and is answered (through the stand-in's API), and
the requests it refuses: a bad signature, a stale timestamp, a wrong token, a plain
body, and everything when the channel has no keys. Lowercase header names are fine."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.feishu import FeishuStandIn, stand_in, write_config
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli
from tether.channels.feishu.webhook import encrypt, signature

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]
TOKEN, KEY = "v-token-123", "encrypt-key-456"
ENV = {
    "TEST_FEISHU_SECRET": "",
    "TETHER_FEISHU_VERIFICATION_TOKEN": TOKEN,
    "TETHER_FEISHU_ENCRYPT_KEY": KEY,
    "NO_PROXY": "127.0.0.1,localhost",
}


@pytest.fixture
def engine() -> str:
    return "sqlite"


@pytest.fixture
def gw(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> GatewayProcess:
    write_config(home, stand_in, secret_env="TEST_FEISHU_SECRET", mode="webhook")
    gateway = make_gateway(**{**ENV, "TEST_FEISHU_SECRET": stand_in.app_secret})
    make_runner(gateway)
    assert run_cli(home, "users", "add", "alice").returncode == 0
    linked = run_cli(home, "users", "link", "alice", "--channel", "feishu", "--id", "ou_alice")
    assert linked.returncode == 0, linked.stderr
    return gateway


def sealed(inner: dict[str, Any], key: str = KEY) -> bytes:
    return json.dumps(
        {"encrypt": encrypt(key, json.dumps(inner).encode(), os.urandom(16))}
    ).encode()


def signed_headers(
    body: bytes, *, key: str = KEY, at: float | None = None, lower: bool = False
) -> dict[str, str]:
    stamp, nonce = str(int(at if at is not None else time.time())), secrets.token_hex(8)
    headers = {
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": signature(stamp, nonce, key, body),
        "Content-Type": "application/json",
    }
    return {k.lower(): v for k, v in headers.items()} if lower else headers


def event(event_id: str, text: str, message_id: str, token: str = TOKEN) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": event_id, "event_type": "im.message.receive_v1", "token": token},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": "user"},
            "message": {
                "message_id": message_id,
                "chat_id": "oc_1",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
            },
        },
    }


async def post(
    gw: GatewayProcess, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}/channels/feishu", data=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


def replies_to(stand_in: FeishuStandIn, message_id: str) -> list[str]:
    return [
        json.loads(m["content"])["zh_cn"]["content"][0][0]["text"]
        for m in list(stand_in.messages.values())
        if m.get("reply_to") == message_id and m.get("msg_type") == "post"
    ]


async def test_the_challenge_is_answered_and_a_signed_event_runs_and_is_answered(
    gw: GatewayProcess, stand_in: FeishuStandIn
) -> None:
    challenge = sealed({"challenge": "abc", "token": TOKEN, "type": "url_verification"})
    assert await post(gw, challenge, {"Content-Type": "application/json"}) == (
        200,
        {"challenge": "abc"},
    )
    body = sealed(event("ev_w1", "!echo via-webhook", "om_w1"))
    status, answer = await post(gw, body, signed_headers(body, lower=True))  # lowercase names
    assert (status, answer) == (200, {"msg": "success"})
    stand_in.wait_for(
        lambda: any("via-webhook" in r for r in replies_to(stand_in, "om_w1")), 30 * SCALE
    )
    status, _ = await post(gw, body, signed_headers(body))  # delivered again: no second run
    assert status == 200
    time.sleep(1.0)
    assert len(replies_to(stand_in, "om_w1")) == 1


@pytest.mark.parametrize(
    "attack",
    [
        "bad signature",
        "stale",
        "future",
        "wrong token",
        "wrong challenge token",
        "plain body",
        "unsigned",
        "other key",
    ],
)
async def test_what_is_not_the_apps_is_refused_and_runs_nothing(
    gw: GatewayProcess, stand_in: FeishuStandIn, home: Path, attack: str
) -> None:
    body = sealed(event("ev_x", "!echo must-not-run", "om_x"))
    headers = signed_headers(body)
    if attack == "bad signature":
        headers["X-Lark-Signature"] = "0" * 64
    elif attack == "stale":
        headers = signed_headers(body, at=time.time() - 3600)
    elif attack == "future":
        headers = signed_headers(body, at=time.time() + 3600)
    elif attack == "wrong token":
        body = sealed(event("ev_x", "!echo must-not-run", "om_x", token="not-it"))
        headers = signed_headers(body)
    elif attack == "wrong challenge token":
        body = sealed({"challenge": "abc", "token": "not-it", "type": "url_verification"})
        headers = {"Content-Type": "application/json"}
    elif attack == "plain body":
        body = json.dumps(event("ev_x", "!echo must-not-run", "om_x")).encode()
        headers = signed_headers(body)
    elif attack == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif attack == "other key":
        body = sealed(event("ev_x", "!echo must-not-run", "om_x"), key="someone-elses")
        headers = signed_headers(body, key="someone-elses")
    status, answer = await post(gw, body, headers)
    assert status == 401, answer
    assert "challenge" not in answer
    runs = json.loads(run_cli(home, "--json", "runs", "list").stdout)["runs"]
    assert runs == []


async def test_without_its_keys_the_webhook_refuses_everything(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway
) -> None:
    write_config(home, stand_in, secret_env="TEST_FEISHU_SECRET", mode="webhook")
    gateway = make_gateway(TEST_FEISHU_SECRET=stand_in.app_secret, NO_PROXY="127.0.0.1,localhost")
    challenge = sealed({"challenge": "abc", "token": TOKEN, "type": "url_verification"})
    status, _ = await post(gateway, challenge, {"Content-Type": "application/json"})
    assert status == 401
    assert "no verification token or encrypt key" in gateway.stderr()


async def test_a_card_click_posted_to_the_webhook_decides_and_answers_with_its_toast(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    write_config(
        home, stand_in, secret_env="TEST_FEISHU_SECRET", mode="webhook", session_mode="ask"
    )
    gw = make_gateway(**{**ENV, "TEST_FEISHU_SECRET": stand_in.app_secret})
    make_runner(gw)
    assert run_cli(home, "users", "add", "alice").returncode == 0
    linked = run_cli(home, "users", "link", "alice", "--channel", "feishu", "--id", "ou_alice")
    assert linked.returncode == 0, linked.stderr
    body = sealed(event("ev_wc", "!echo clicked-in", "om_wc"))
    assert (await post(gw, body, signed_headers(body)))[0] == 200

    def card() -> tuple[str, dict[str, Any]] | None:
        for mid, m in list(stand_in.messages.items()):
            if m.get("msg_type") == "interactive" and "Allow once" in m["content"]:
                return mid, json.loads(m["content"])
        return None

    stand_in.wait_for(lambda: card() is not None, 30 * SCALE)
    card_id, content = card()  # type: ignore[misc]
    value = next(
        b["behaviors"][0]["value"]
        for column in content["body"]["elements"][1]["columns"]
        for b in column["elements"]
        if b["text"]["content"] == "Allow once"
    )
    clicked = sealed(
        {
            "schema": "2.0",
            "header": {"event_id": "ev_wclick", "event_type": "card.action.trigger",
                       "token": TOKEN},
            "event": {
                "operator": {"open_id": "ou_alice"},
                "action": {"value": value, "tag": "button"},
                "context": {"open_message_id": card_id, "open_chat_id": "oc_1"},
            },
        }
    )  # fmt: skip
    status, answer = await post(gw, clicked, signed_headers(clicked))
    assert status == 200
    assert "allowed once" in answer["toast"]["content"]
    stand_in.wait_for(
        lambda: any("clicked-in" in r for r in replies_to(stand_in, "om_wc")), 30 * SCALE
    )
