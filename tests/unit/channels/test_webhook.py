"""The webhook channel's pure parts: signatures, events, and what an HTTP answer means."""

from __future__ import annotations

import email.utils
import json

import pytest

from tether.channels import Delivered, Permanent, RetryAfter
from tether.channels.webhook.config import WebhookConfig, secret_of
from tether.channels.webhook.errors import BadEvent, SignatureRejected, delivery_result
from tether.channels.webhook.events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    to_inbound,
    verify,
)

SECRET = b"k" * 40
BODY = b'{"event_id": "e1"}'
NOW = 1_800_000_000.0


def test_a_signed_body_verifies_within_the_window_and_nothing_else_does() -> None:
    headers = sign(SECRET, BODY, NOW)
    verify(SECRET, headers, BODY, now=NOW + 299, window=300)
    cases = {
        "unsigned": {},
        "no signature": {TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER]},
        "wrong secret": sign(b"x" * 40, BODY, NOW),
        "stale": sign(SECRET, BODY, NOW - 301),
        "future": sign(SECRET, BODY, NOW + 301),
        "not seconds": {**headers, TIMESTAMP_HEADER: "1.5e9"},
        "other scheme": {**headers, SIGNATURE_HEADER: "sha1=" + "0" * 40},
        "truncated": {**headers, SIGNATURE_HEADER: headers[SIGNATURE_HEADER][:-1]},
        "timestamp moved": {**headers, TIMESTAMP_HEADER: str(int(NOW) + 1)},
    }
    for why, bad in cases.items():
        with pytest.raises(SignatureRejected):
            verify(SECRET, bad, BODY, now=NOW, window=300)
        assert why
    with pytest.raises(SignatureRejected):  # the body is covered
        verify(SECRET, headers, BODY + b" ", now=NOW, window=300)


def _body(**more: object) -> bytes:
    data = {"event_id": "e1", "chat": {"id": "c"}, "sender": {"id": "u"}, "text": "hi"}
    data.update(more)
    return json.dumps(data).encode()


def test_events_become_inbound_messages_addressed_as_the_chat_says() -> None:
    p2p = to_inbound("webhook.ops", _body(), bot_id="tether", trigger="mention")
    assert (p2p.chat_kind, p2p.addressed, p2p.conversation) == ("p2p", True, "webhook.ops:c")
    group = {"id": "g", "type": "group"}
    plain = to_inbound("webhook.ops", _body(chat=group), bot_id="tether", trigger="mention")
    assert (plain.chat_kind, plain.addressed) == ("group", False)
    at = to_inbound(
        "webhook.ops", _body(chat=group, text="@tether  do it"), bot_id="tether", trigger="mention"
    )
    assert (at.addressed, at.text) == (True, "do it")
    mentioned = to_inbound(
        "webhook.ops", _body(chat=group, mentions=["tether"]), bot_id="tether", trigger="mention"
    )
    assert mentioned.addressed
    said = to_inbound(
        "webhook.ops", _body(chat=group, addressed=True), bot_id="tether", trigger="mention"
    )
    assert said.addressed
    every = to_inbound("webhook.ops", _body(chat=group), bot_id="tether", trigger="all")
    assert every.addressed
    topic = to_inbound(
        "webhook.ops", _body(chat={**group, "thread": "t"}), bot_id="t", trigger="mention"
    )
    assert (topic.chat_kind, topic.conversation) == ("topic", "webhook.ops:g:t")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"event_id": "e"}).encode(),
        _body(event_id=""),
        _body(chat={"id": "c", "type": "channel"}),
        _body(extra="field"),
        _body(text="x" * 100_001),
    ],
)
def test_what_is_not_an_event_is_refused(body: bytes) -> None:
    with pytest.raises(BadEvent):
        to_inbound("webhook.ops", body, bot_id="tether", trigger="mention")


def test_an_http_answer_is_delivered_retried_later_or_refused_for_good() -> None:
    assert delivery_result(200, {}, b'{"message_id": "m1"}') == Delivered(message_id="m1")
    assert delivery_result(204, {}, b"") == Delivered()
    assert delivery_result(201, {}, b"<html>") == Delivered()
    limited = delivery_result(429, {"Retry-After": "7"}, b"")
    assert isinstance(limited, RetryAfter)
    assert limited.seconds == 7
    when = email.utils.formatdate(NOW + 30, usegmt=True)
    dated = delivery_result(503, {"Retry-After": when}, b"")
    assert isinstance(dated, RetryAfter)
    assert 0 <= dated.seconds <= 3600
    assert isinstance(delivery_result(500, {}, b""), RetryAfter)
    assert isinstance(delivery_result(429, {"Retry-After": "soon"}, b""), RetryAfter)
    for status in (400, 401, 403, 404, 413, 422):
        assert isinstance(delivery_result(status, {}, b"no"), Permanent)


def test_a_missing_or_short_secret_means_no_secret() -> None:
    config = WebhookConfig(secret_env="HOOK")
    assert secret_of(WebhookConfig(), {})[0] is None
    assert secret_of(config, {})[0] is None
    assert secret_of(config, {"HOOK": "short"})[0] is None
    assert secret_of(config, {"HOOK": "k" * 32}) == (b"k" * 32, "")
