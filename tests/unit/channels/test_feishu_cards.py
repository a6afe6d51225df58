"""Feishu cards as built, and clicks as read: what a card offers follows what the gateway
asks, a card stays under Feishu's size, and a click's value can only ever stand for one
of the four commands, for a one-word handle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.channels.feishu.cards import (
    MAX_CARD_TEXT,
    click_of,
    command_of,
    decided_card,
    request_card,
    status_card,
)


def labels(card: dict[str, Any]) -> list[str]:
    text = json.dumps(card, ensure_ascii=False)
    found = []
    for part in text.split('"tag": "button", "text": {"tag": "plain_text", "content": "')[1:]:
        found.append(part.split('"', 1)[0])
    return found


def test_an_approval_has_three_buttons_in_the_persons_language() -> None:
    en = request_card("Approval needed [a1]: run `ls`", "a1", [], None)
    assert labels(en) == ["Allow once", "Allow for session", "Deny"]
    zh = request_card("需要批准 [a1]：运行 `ls`\n  /approve a1 批准一次", "a1", [], None)
    assert labels(zh) == ["允许一次", "本会话允许", "拒绝"]
    assert en["config"]["update_multi"] is True
    assert en["schema"] == "2.0"


def test_a_question_offers_its_choices_or_no_buttons_for_free_text() -> None:
    assert labels(request_card("Question [q1]: colour?", "q1", ["red", "blue"], None)) == [
        "red",
        "blue",
    ]
    assert (
        labels(request_card("Question [q2]: why?\n  /answer q2 YOUR ANSWER", "q2", [], None)) == []
    )
    assert labels(request_card("问题 [q3]：为什么？", "q3", [], None)) == []


def test_cards_stay_under_feishus_size() -> None:
    huge = "x" * 100_000
    for card in (status_card(huge), request_card(huge, "a1", [], None), decided_card(huge, "ok")):
        assert len(json.dumps(card).encode()) < 30 * 1024
    assert MAX_CARD_TEXT < 30 * 1024


def test_a_decided_card_has_no_buttons_and_says_the_outcome() -> None:
    card = decided_card("Approval needed [a1]: run `ls`", "[a1] denied (alice).")
    assert labels(card) == []
    assert "denied (alice)" in json.dumps(card)


def envelope(value: Any, **event: Any) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": "ev1", "event_type": "card.action.trigger"},
        "event": {
            "operator": {"open_id": "ou_a"},
            "action": {"value": value},
            "context": {"open_chat_id": "oc_1", "open_message_id": "om_1"},
            **event,
        },
    }


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ({"tether": 1, "handle": "a1", "do": "allow_once"}, "/approve a1"),
        ({"tether": 1, "handle": "a1", "do": "allow_session"}, "/approve a1 session"),
        ({"tether": 1, "handle": "a1", "do": "deny"}, "/deny a1"),
        ({"tether": 1, "handle": "q1", "answer": "light\nblue"}, "/answer q1 light blue"),
        (json.dumps({"tether": 1, "handle": "a1", "do": "deny"}), "/deny a1"),
    ],
)
def test_a_click_is_the_command_its_button_stands_for(value: Any, command: str) -> None:
    click = click_of(envelope(value))
    assert click is not None
    assert command_of(click) == command
    assert (click.open_id, click.chat_id) == ("ou_a", "oc_1")


@pytest.mark.parametrize(
    "value",
    [
        {"tether": 1, "handle": "a1 session", "do": "allow_once"},  # a word riding along
        {"tether": 1, "handle": "a1\n/deny a2", "do": "allow_once"},
        {"tether": 1, "handle": "a1", "do": "allow_forever"},
        {"tether": 1, "handle": "a1", "do": "deny", "answer": "x"},  # both
        {"tether": 1, "handle": "a1"},  # neither
        {"handle": "a1", "do": "deny"},  # not tether's
        {"tether": 1, "handle": 7, "do": "deny"},
        "not json",
        None,
    ],
)
def test_a_value_tether_did_not_make_is_no_click(value: Any) -> None:
    assert click_of(envelope(value)) is None


def test_a_click_without_who_or_where_is_no_click() -> None:
    value = {"tether": 1, "handle": "a1", "do": "deny"}
    assert click_of(envelope(value, operator={})) is None
    assert click_of(envelope(value, context={})) is None
