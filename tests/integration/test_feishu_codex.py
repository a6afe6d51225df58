"""Codex from Feishu, end to end: a p2p message, through the real ``lark-oapi`` SDK against
the stand-in, starts a run of the hosted ``codex`` agent (the real ``codex app-server`` on
a real runner, against the scripted model server). Codex asks to run a shell command; the
approval card appears; a click on "Allow once" runs the command on the runner; Codex's
final reply is posted under the message; the status card ends done and the approval card
shows who decided."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_feishu_channel import message, push, replies_to, runs, start_gateway
from tests.support.agents import MODEL_KEY, codex_config, escalated
from tests.support.feishu import (
    FeishuStandIn,
    all_cards,
    buttons,
    click,
    request_card,
    stand_in,
    texts,
)
from tests.support.process import SCALE, GatewayProcess, RunnerProcess

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def engine() -> str:
    """A channel's feature: SQLite is enough (the ledger's engines are tested elsewhere)."""
    return "sqlite"


async def test_codex_asks_on_a_card_a_click_runs_the_command_and_the_reply_reaches_the_chat(
    home: Path,
    stand_in: FeishuStandIn,
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    model: Any,
    tmp_path: Path,
) -> None:
    # the model server serves on this test's loop: every blocking wait goes to a thread
    server = await model(
        [escalated("echo agent-was-here > proof.txt && cat proof.txt"), {"text": "Wrote it."}]
    )
    config = codex_config(tmp_path / "runner.toml", server)
    runner_env = {"TETHER_CONFIG": str(config), "SCRIPTED_API_KEY": MODEL_KEY}

    def codex_runner(gateway: GatewayProcess) -> RunnerProcess:
        return make_runner(gateway, env=runner_env)

    await asyncio.to_thread(
        start_gateway, home, stand_in, make_gateway, codex_runner, session_mode="ask",
        agent="codex",
    )  # fmt: skip
    ack = await asyncio.to_thread(
        push, stand_in, message("create proof.txt", message_id="om_x1"), "ev_x1"
    )
    assert ack.code == 200

    # Codex asks; the approval card shows the command, and nothing has run yet
    card_id, card = await asyncio.to_thread(request_card, stand_in, 90)
    assert "echo agent-was-here" in texts(card)
    choices = buttons(card)
    assert list(choices) == ["Allow once", "Allow for session", "Deny"]
    proof = home / "ws-box" / "proof.txt"
    assert not proof.exists()
    assert replies_to(stand_in, "om_x1") == []
    [waiting] = await asyncio.to_thread(runs, home)
    assert (waiting["agent"], waiting["state"]) in {("codex", "running"), ("codex", "waiting")}
    assert len(server.requests) == 1  # Codex was not told to go on

    # alice clicks "Allow once" (a card frame, as Feishu sends a card callback)
    ack = await asyncio.to_thread(
        click, stand_in, choices["Allow once"], by="ou_alice", card_id=card_id, frame_type="card"
    )
    assert ack.code == 200
    assert "allowed once" in ack.data["toast"]["content"]

    # the command ran on the runner, in the workspace, and Codex's reply reached the chat
    await asyncio.to_thread(
        stand_in.wait_for,
        lambda: any("Wrote it." in r for r in replies_to(stand_in, "om_x1")),
        60 * SCALE,
    )
    assert proof.read_text() == "agent-was-here\n"
    assert replies_to(stand_in, "om_x1") == ["Wrote it."]
    told = [i for i in server.requests[-1]["input"] if i.get("type") == "function_call_output"]
    assert "agent-was-here" in told[-1]["output"]  # Codex saw the command's output
    [run] = await asyncio.to_thread(runs, home)
    assert (run["state"], run["output"]) == ("succeeded", "Wrote it."), run
    assert run["input"] == "create proof.txt"

    # the approval card shows who decided, without its buttons
    await asyncio.to_thread(
        stand_in.wait_for,
        lambda: "allowed once" in stand_in.messages[card_id]["content"],
        30 * SCALE,
    )
    decided = json.loads(stand_in.messages[card_id]["content"])
    assert buttons(decided) == {}
    assert "alice" in texts(decided)
    assert stand_in.messages[card_id].get("patches", 0) >= 1

    # one status card for the run, edited in place to done
    [status_id] = [
        mid for mid, c in all_cards(stand_in) if c["header"]["title"]["content"] == "Run"
    ]
    await asyncio.to_thread(
        stand_in.wait_for, lambda: "done" in stand_in.messages[status_id]["content"], 30 * SCALE
    )
    status = json.loads(stand_in.messages[status_id]["content"])
    assert status["header"]["template"] == "green"
    assert stand_in.messages[status_id].get("patches", 0) >= 1
    assert stand_in.rate_violations == []
