"""Replies streamed into a CardKit card: a real gateway and a fast-streaming ``script``
agent, the real ``lark-oapi`` SDK against the stand-in (which checks that ``sequence``
rises strictly per card and counts content updates per second). The complete reply lands
in the card, once; after a kill -9 mid-stream it still arrives exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_feishu_channel import message, push, replies_to, runs, start_gateway
from tests.support.feishu import FeishuStandIn, stand_in
from tests.support.process import SCALE, GatewayProcess, RunnerProcess

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]
FIXTURES = {"TETHER_RUNS__FIXTURE_ROLES": "admin,member"}


@pytest.fixture
def engine() -> str:
    return "sqlite"


def script(batches: int, last: str) -> str:
    return "\n".join(["events 20 12", "sleep 0.25"] * batches + [f"say {last}"])


def streamed(stand_in: FeishuStandIn) -> list[dict[str, object]]:
    return list(stand_in.card_entities.values())


def test_a_fast_reply_streams_into_one_card_within_its_limits_and_ends_complete(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    start_gateway(home, stand_in, make_gateway, make_runner, agent="script", streaming=True,
                  **FIXTURES)  # fmt: skip
    assert push(stand_in, message(script(8, "the-whole-reply"), message_id="om_s1"), "ev_s1")
    stand_in.wait_for(
        lambda: any(
            e["texts"].get("reply") == "the-whole-reply" and not e["streaming"]
            for e in streamed(stand_in)
        ),
        30 * SCALE,
    )
    [entity] = streamed(stand_in)
    assert len(entity["updates"]) >= 3  # it streamed: the text grew in place
    assert stand_in.rate_violations == []  # sequences rose; at most 10 updates a second
    # the card is the reply: one message, under the message it answers, and no post
    [(card_message, _)] = [
        (mid, m) for mid, m in stand_in.messages.items()
        if m.get("msg_type") == "interactive" and '"card_id"' in m["content"]
    ]  # fmt: skip
    assert stand_in.messages[card_message]["reply_to"] == "om_s1"
    time.sleep(1.0)
    assert replies_to(stand_in, "om_s1") == []
    assert [r["state"] for r in runs(home)] == ["succeeded"]


def test_a_kill_mid_stream_still_ends_with_the_whole_reply_exactly_once(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = start_gateway(
        home, stand_in, make_gateway, make_runner, agent="script", streaming=True,
        TETHER_CHANNELS__DELIVERY_BACKOFF="0.2", **FIXTURES,
    )  # fmt: skip
    assert push(stand_in, message(script(16, "complete-reply"), message_id="om_s2"), "ev_s2")
    stand_in.wait_for(lambda: any(len(e["updates"]) >= 2 for e in streamed(stand_in)), 30)
    gw.kill()
    stand_in.wait_for(lambda: stand_in.connected == 0, 10)
    gw.start()
    stand_in.wait_for(lambda: stand_in.connected == 1, 30 * SCALE)
    deadline = time.monotonic() + 60 * SCALE
    while [r["state"] for r in runs(home)] != ["succeeded"]:
        assert time.monotonic() < deadline, runs(home)
        time.sleep(0.2)

    def shown() -> int:
        in_cards = [e for e in streamed(stand_in) if e["texts"].get("reply") == "complete-reply"]
        in_posts = [r for r in replies_to(stand_in, "om_s2") if "complete-reply" in r]
        return len(in_cards) + len(in_posts)

    stand_in.wait_for(lambda: shown() >= 1, 30 * SCALE)
    time.sleep(1.5)
    assert shown() == 1
    assert not [v for v in stand_in.rate_violations if v.startswith("sequence")]
