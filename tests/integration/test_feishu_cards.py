"""Feishu cards end to end: a real gateway, runner and operator agent in ``ask`` mode, with
the real ``lark-oapi`` SDK against the stand-in. A run shows one status card, edited in
place; an approval is a card with buttons; a click (in an event frame or a card frame)
decides it for the person who clicked, if they may, and the card then shows the outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_feishu_channel import (
    message,
    push,
    replies_to,
    runs,
    start_gateway,
)
from tests.support.feishu import (
    FeishuStandIn,
    all_cards,
    buttons,
    click,
    request_card,
    stand_in,
    texts,
)
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


@pytest.fixture
def engine() -> str:
    return "sqlite"


@pytest.fixture
def asking(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> GatewayProcess:
    """Sessions in ``ask`` mode: every command waits for a person."""
    return start_gateway(home, stand_in, make_gateway, make_runner, session_mode="ask")


def approvals(home: Path) -> list[dict[str, Any]]:
    listed = run_cli(home, "--json", "approvals", "list")
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)["requests"]
    return found


@pytest.mark.parametrize("frame_type", ["event", "card"])
def test_a_click_on_the_approval_card_runs_the_command_and_the_cards_show_it(
    asking: GatewayProcess, stand_in: FeishuStandIn, home: Path, frame_type: str
) -> None:
    assert push(stand_in, message("!echo carded", message_id="om_c1"), "ev_c1").code == 200
    card_id, card = request_card(stand_in)
    assert "echo carded" in texts(card)
    assert card["config"]["update_multi"] is True
    choices = buttons(card)
    assert list(choices) == ["Allow once", "Allow for session", "Deny"]
    assert replies_to(stand_in, "om_c1") == []  # nothing ran yet

    ack = click(stand_in, choices["Allow once"], by="ou_alice", card_id=card_id,
                frame_type=frame_type)  # fmt: skip
    assert ack.code == 200
    assert "allowed once" in ack.data["toast"]["content"]
    stand_in.wait_for(lambda: any("carded" in r for r in replies_to(stand_in, "om_c1")), 30)
    [run] = runs(home)
    assert run["state"] == "succeeded"
    # the request's card shows who decided, without its buttons
    stand_in.wait_for(lambda: "allowed once" in stand_in.messages[card_id]["content"], 30)
    decided = json.loads(stand_in.messages[card_id]["content"])
    assert buttons(decided) == {}
    assert "alice" in texts(decided)
    # one status card for the run, edited in place to its end
    [(status_id, _)] = [
        (mid, c) for mid, c in all_cards(stand_in) if c["header"]["title"]["content"] == "Run"
    ]
    stand_in.wait_for(lambda: "done" in stand_in.messages[status_id]["content"], 30)
    assert stand_in.messages[status_id].get("patches", 0) >= 1
    assert stand_in.rate_violations == []


def test_a_click_by_someone_who_may_not_decide_is_refused_and_nothing_runs(
    asking: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    added = run_cli(home, "users", "add", "bob")
    assert added.returncode == 0, added.stderr
    linked = run_cli(home, "users", "link", "bob", "--channel", "feishu", "--id", "ou_bob")
    assert linked.returncode == 0, linked.stderr
    assert push(stand_in, message("!echo not-yet", message_id="om_c2"), "ev_c2").code == 200
    card_id, card = request_card(stand_in)
    choices = buttons(card)

    ack = click(stand_in, choices["Allow for session"], by="ou_bob", card_id=card_id)
    assert ack.data["toast"]["content"].startswith("Could not do that")  # and says why
    stranger = click(stand_in, choices["Allow once"], by="ou_mallory", card_id=card_id)
    assert stranger.code == 200
    assert "allowed" not in json.dumps(stranger.data or {})
    [waiting] = approvals(home)
    assert waiting["state"] == "open"
    assert all("[exit" not in r for r in replies_to(stand_in, "om_c2"))  # nothing ran
    # alice, whose run it is, denies it: nothing ran, and the card says so
    ack = click(stand_in, choices["Deny"], by="ou_alice", card_id=card_id)
    assert "denied" in ack.data["toast"]["content"]
    stand_in.wait_for(lambda: "denied" in stand_in.messages[card_id]["content"], 30)
    assert all("not-yet\n[exit" not in r for r in replies_to(stand_in, "om_c2"))


def test_a_forged_button_value_decides_nothing(
    asking: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    assert push(stand_in, message("!echo forged", message_id="om_c3"), "ev_c3").code == 200
    card_id, card = request_card(stand_in)
    deny = buttons(card)["Deny"]
    # a handle with a word riding along, an unknown action, both actions, no tether mark
    for value in (
        {**deny, "handle": f"{deny['handle']} session", "do": "allow_once"},
        {**deny, "do": "allow_forever"},
        {**deny, "answer": "yes"},
        {k: v for k, v in deny.items() if k != "tether"},
        json.dumps(deny) + "garbage",
    ):
        ack = click(stand_in, value, by="ou_alice", card_id=card_id)  # type: ignore[arg-type]
        assert ack.code == 200
        assert ack.data is None
    [waiting] = approvals(home)
    assert waiting["state"] == "open"


def test_the_same_click_delivered_twice_decides_once(
    asking: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    assert push(stand_in, message("!echo once", message_id="om_c4"), "ev_c4").code == 200
    card_id, card = request_card(stand_in)
    event = {
        "operator": {"open_id": "ou_alice"},
        "action": {"value": buttons(card)["Allow once"], "tag": "button"},
        "context": {"open_message_id": card_id, "open_chat_id": "oc_p2p"},
    }
    first = stand_in.push("card.action.trigger", event, event_id="ev_click").result(10 * SCALE)
    again = stand_in.push("card.action.trigger", event, event_id="ev_click").result(10 * SCALE)
    assert "allowed once" in first.data["toast"]["content"]
    assert again.code == 200
    assert again.data is None  # answered the first time
    stand_in.wait_for(lambda: any("once" in r for r in replies_to(stand_in, "om_c4")), 30)
    assert len([r for r in replies_to(stand_in, "om_c4") if "[exit 0]" in r]) == 1


def test_an_expired_request_shows_on_its_card(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    start_gateway(
        home, stand_in, make_gateway, make_runner, session_mode="ask",
        TETHER_POLICY__APPROVAL_TIMEOUT="2",
    )  # fmt: skip
    assert push(stand_in, message("!echo too-late", message_id="om_c5"), "ev_c5").code == 200
    card_id, card = request_card(stand_in)
    stand_in.wait_for(lambda: "expired" in stand_in.messages[card_id]["content"], 30 * SCALE)
    assert buttons(json.loads(stand_in.messages[card_id]["content"])) == {}
    ack = click(stand_in, buttons(card)["Allow once"], by="ou_alice", card_id=card_id)
    assert "allowed once" not in ack.data["toast"]["content"]  # too late: said, not done


def test_a_request_a_restart_ends_shows_as_cancelled_on_its_card(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    """The run waiting on the card dies with the gateway (kill -9). After the restart it
    ends as interrupted, and its request's card, found through the ledger (the channel's
    memory went with the process), shows it cancelled and loses its buttons."""
    gw = start_gateway(home, stand_in, make_gateway, make_runner, session_mode="ask")
    assert push(stand_in, message("!echo after-restart", message_id="om_c6"), "ev_c6").code == 200
    card_id, card = request_card(stand_in)
    gw.kill()
    stand_in.wait_for(lambda: stand_in.connected == 0, 10 * SCALE)
    gw.start()

    def shown() -> dict[str, Any]:
        return json.loads(stand_in.messages[card_id]["content"])

    stand_in.wait_for(lambda: not buttons(shown()), 30 * SCALE)
    assert "cancelled" in texts(shown())
    assert [r["state"] for r in runs(home)] == ["failed"]
    assert [mid for mid, c in all_cards(stand_in) if buttons(c)] == []  # no second card
    ack = click(stand_in, buttons(card)["Allow once"], by="ou_alice", card_id=card_id)
    assert "allowed once" not in ack.data["toast"]["content"]  # nothing left to allow
    assert not any("after-restart" in r for r in replies_to(stand_in, "om_c6"))


def test_a_question_is_answered_by_a_choice_on_its_card(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    start_gateway(
        home, stand_in, make_gateway, make_runner, agent="script",
        TETHER_RUNS__FIXTURE_ROLES="admin,member",
    )  # fmt: skip
    asked = message('ask "Which colour?" red blue', message_id="om_q")
    assert push(stand_in, asked, "ev_q").code == 200
    card_id, card = request_card(stand_in)
    assert "Which colour?" in texts(card)
    choices = buttons(card)
    assert list(choices) == ["red", "blue"]
    ack = click(stand_in, choices["blue"], by="ou_alice", card_id=card_id)
    assert ack.code == 200
    assert "Could not" not in ack.data["toast"]["content"]
    stand_in.wait_for(lambda: any("blue" in r for r in replies_to(stand_in, "om_q")), 30)
    stand_in.wait_for(lambda: not buttons(json.loads(stand_in.messages[card_id]["content"])), 30)
    assert "blue" in stand_in.messages[card_id]["content"]
