"""Feishu message events as tether reads them, and Feishu's answers as delivery results."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.channels.contract import Delivered, Permanent, RetryAfter
from tether.channels.feishu.api import message_uuid, result_of
from tether.channels.feishu.events import BadFeishuEvent, to_inbound

BOT = "ou_bot"


def envelope(message: dict[str, Any], *, sender_type: str = "user") -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": "ev_1", "event_type": "im.message.receive_v1"},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": sender_type},
            "message": {"message_id": "om_1", "chat_id": "oc_1", "chat_type": "p2p", **message},
        },
    }


def text(value: str, **more: Any) -> dict[str, Any]:
    return {"message_type": "text", "content": json.dumps({"text": value}), **more}


def read(env: dict[str, Any], trigger: str = "mention") -> Any:
    return to_inbound(env, channel="feishu", bot_open_id=BOT, trigger=trigger)  # type: ignore[arg-type]


def test_a_p2p_text_message_is_addressed_and_keeps_its_ids() -> None:
    m = read(envelope(text("hi", create_time="1767225600000", parent_id="om_0")))
    assert (m.event_id, m.chat_id, m.message_id, m.sender.id) == (
        "ev_1",
        "oc_1",
        "om_1",
        "ou_alice",
    )
    assert (m.text, m.chat_kind, m.addressed, m.reply_to) == ("hi", "p2p", True, "om_0")
    assert m.sent_at == 1767225600.0


def test_in_a_group_the_bots_mention_addresses_it_and_is_not_input() -> None:
    mentions = [
        {"key": "@_user_1", "id": {"open_id": BOT}, "name": "tether"},
        {"key": "@_user_2", "id": {"open_id": "ou_bob"}, "name": "Bob"},
    ]
    m = read(envelope(text("@_user_1 ask @_user_2 please", chat_type="group", mentions=mentions)))
    assert m.addressed
    assert m.text == "ask @Bob please"
    assert m.mentions == [BOT, "ou_bob"]
    plain = read(envelope(text("just talking", chat_type="group")))
    assert not plain.addressed
    assert read(envelope(text("all", chat_type="group")), trigger="all").addressed


def test_a_topic_is_its_own_conversation() -> None:
    m = read(envelope(text("in a topic", chat_type="group", thread_id="omt_9")))
    assert (m.chat_kind, m.thread) == ("topic", "omt_9")


def test_a_post_becomes_plain_text_with_its_title_links_mentions_and_code() -> None:
    post = {
        "zh_cn": {
            "title": "Plan",
            "content": [
                [
                    {"tag": "text", "text": "see "},
                    {"tag": "a", "text": "docs", "href": "https://x.test"},
                ],
                [{"tag": "at", "user_name": "Bob"}, {"tag": "text", "text": " check"}],
                [{"tag": "code_block", "language": "sh", "text": "ls"}],
            ],
        }
    }
    m = read(envelope({"message_type": "post", "content": json.dumps(post)}))
    assert m.text == "Plan\nsee docs (https://x.test)\n@Bob check\n```sh\nls\n```"


def test_messages_not_from_a_person_or_without_text_or_files_are_not_taken() -> None:
    assert read(envelope(text("echo"), sender_type="app")) is None
    assert read(envelope({"message_type": "sticker", "content": '{"file_key":"k"}'})) is None
    assert read(envelope({"message_type": "image", "content": "{}"})) is None


def test_images_and_files_are_attachments_with_the_key_the_resource_api_takes() -> None:
    m = read(envelope({"message_type": "image", "content": '{"image_key":"img_v3_0123456789"}'}))
    assert m.text == ""
    [image] = m.attachments
    assert (image.name, image.media_type, image.key) == (
        "image-23456789", "image/*", "image:img_v3_0123456789",
    )  # fmt: skip
    body = {"file_key": "file_v3_k", "file_name": "report.pdf", "file_size": 1234}
    m = read(envelope({"message_type": "file", "content": json.dumps(body)}))
    [file] = m.attachments
    assert (file.name, file.media_type, file.size, file.key) == (
        "report.pdf", "application/pdf", 1234, "file:file_v3_k",
    )  # fmt: skip
    post = {"zh_cn": {"content": [[{"tag": "text", "text": "look"}],
                                  [{"tag": "img", "image_key": "img_a"}],
                                  [{"tag": "img", "image_key": "img_b"}]]}}  # fmt: skip
    m = read(envelope({"message_type": "post", "content": json.dumps(post)}))
    assert m.text.strip() == "look"
    assert [a.key for a in m.attachments] == ["image:img_a", "image:img_b"]
    audio = read(envelope({"message_type": "audio", "content": '{"file_key":"file_au"}'}))
    assert audio.attachments[0].media_type == "audio/ogg"


@pytest.mark.parametrize(
    "broken",
    [
        {"message_type": "text", "content": "not json"},
        {"message_type": "text", "content": '{"text":"x"}', "chat_id": ""},
    ],
)
def test_a_broken_message_event_is_refused_in_words(broken: dict[str, Any]) -> None:
    with pytest.raises(BadFeishuEvent):
        read(envelope(broken))


class _Data:
    message_id = "om_9"


@pytest.mark.parametrize(
    ("status", "code", "headers", "expected"),
    [
        (200, 0, {}, Delivered(message_id="om_9")),
        (400, 230020, {"x-ogw-ratelimit-reset": "7"}, RetryAfter(seconds=7.0, reason="")),
        (429, 99991400, {"X-Ogw-Ratelimit-Reset": "3"}, RetryAfter(seconds=3.0, reason="")),
        (429, None, {}, RetryAfter(seconds=1.0, reason="")),
        (502, None, {}, RetryAfter(seconds=0.0, reason="")),
        (503, 0, {}, RetryAfter(seconds=0.0, reason="")),  # a 5xx is no success, body or not
        (400, 0, {}, Permanent(reason="")),
        (400, 230025, {}, Permanent(reason="")),
        (400, 230001, {}, Permanent(reason="")),
        (403, 230027, {}, Permanent(reason="")),
    ],
)
def test_feishus_answers_mean_delivered_retry_or_never(
    status: int, code: int | None, headers: dict[str, str], expected: Any
) -> None:
    got = result_of(status, code, "m", headers, _Data())
    assert type(got) is type(expected)
    if isinstance(expected, RetryAfter):
        assert got.seconds == expected.seconds  # type: ignore[union-attr]
    if isinstance(expected, Delivered):
        assert got == expected


def test_a_uuid_is_stable_and_within_feishus_length() -> None:
    key = "delivery:" + "x" * 300
    assert message_uuid(key) == message_uuid(key)
    assert len(message_uuid(key)) <= 50
    assert message_uuid(key) != message_uuid(key + "y")


def test_the_sdk_never_writes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    # `tether gateway --json` prints JSON lines on stdout; the SDK's logger wrote there
    import logging

    from tether.channels.feishu.sdk import load

    load()
    import lark_oapi.ws.client  # noqa: F401 - (it logs on connect)

    logger = logging.getLogger("Lark")
    logger.setLevel(logging.INFO)
    logger.warning("connected to ws://127.0.0.1/ws")
    assert capsys.readouterr().out == ""
