"""Feishu events as tether sees them: ``im.message.receive_v1`` (text and post messages,
images, files, audio and video, in p2p chats, groups and topics) becomes an
:class:`InboundMessage`; every other event type is taken and ignored on purpose (an
event left unanswered is delivered again). An image or file becomes an
:class:`Attachment` whose ``key`` is ``image:KEY`` or ``file:KEY`` (what the message
resource API takes); the channel fetches it when the gateway asks.

The event envelope is Feishu's schema 2.0, the same over the long connection and the
webhook: ``{"schema": "2.0", "header": {"event_id", "event_type", …}, "event": {…}}``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from typing import Any, Literal

from tether.channels.contract import Attachment, ChatKind, InboundMessage, Sender

__all__ = [
    "IGNORED",
    "MESSAGE_RECEIVED",
    "BadFeishuEvent",
    "attachments_of",
    "event_type",
    "text_of",
    "to_inbound",
]

log = logging.getLogger(__name__)

MESSAGE_RECEIVED = "im.message.receive_v1"
IGNORED = frozenset(
    {
        "im.message.message_read_v1",
        "im.message.reaction.created_v1",
        "im.message.reaction.deleted_v1",
        "im.message.recalled_v1",
        "im.chat.access_event.bot_p2p_chat_entered_v1",
        "im.chat.member.bot.added_v1",
        "im.chat.member.bot.deleted_v1",
        "im.chat.updated_v1",
        "im.chat.disbanded_v1",
    }
)
"""Event types an app commonly subscribes to that tether takes and does nothing with."""

_MAX_TEXT = 100_000


class BadFeishuEvent(Exception):
    """An envelope that is not a usable Feishu event."""


def event_type(envelope: dict[str, Any]) -> str:
    header = envelope.get("header")
    if envelope.get("schema") != "2.0" or not isinstance(header, dict):
        raise BadFeishuEvent("not a schema 2.0 event")
    return str(header.get("event_type", ""))


def to_inbound(
    envelope: dict[str, Any],
    *,
    channel: str,
    bot_open_id: str | None,
    trigger: Literal["mention", "all"],
) -> InboundMessage | None:
    """The message an ``im.message.receive_v1`` envelope carries; None for a message tether
    does not take (not from a person, or a kind with no text)."""
    header = envelope["header"]
    event = envelope.get("event") or {}
    message = event.get("message") or {}
    sender = event.get("sender") or {}
    if sender.get("sender_type", "user") != "user":
        return None  # the bot's own messages, other apps: never a turn
    sender_id = (sender.get("sender_id") or {}).get("open_id")
    event_id, chat_id = header.get("event_id"), message.get("chat_id")
    if not (event_id and chat_id and sender_id):
        raise BadFeishuEvent("a message event without its event_id, chat_id or sender")
    mentions = [m for m in message.get("mentions") or [] if isinstance(m, dict)]
    kind_of = message.get("message_type")
    content = message.get("content") or ""
    text = text_of(kind_of, content, mentions)
    files = attachments_of(kind_of, content)
    if text is None and files:
        text = ""
    if text is None:
        log.info(
            "feishu message of a kind tether does not read",
            extra={"kind": message.get("message_type")},
        )
        return None
    mentioned_ids = [str((m.get("id") or {}).get("open_id", "")) for m in mentions]
    at_bot = bot_open_id is not None and bot_open_id in mentioned_ids
    text = _without_bot(text, mentions, bot_open_id)
    chat_type = message.get("chat_type", "p2p")
    thread = message.get("thread_id") or None
    kind: ChatKind = "p2p" if chat_type == "p2p" else ("topic" if thread else "group")
    created = str(message.get("create_time") or "")
    return InboundMessage(
        channel=channel,
        event_id=str(event_id),
        chat_id=str(chat_id),
        chat_kind=kind,
        thread=thread,
        sender=Sender(id=str(sender_id)),  # (a message carries no display name)
        text=text[:_MAX_TEXT],
        message_id=message.get("message_id"),
        mentions=[i for i in mentioned_ids if i],
        addressed=kind == "p2p" or at_bot or trigger == "all",
        reply_to=message.get("parent_id") or None,
        attachments=files,
        sent_at=int(created) / 1000 if created.isdigit() else None,
    )


def text_of(kind: object, content: str, mentions: list[dict[str, Any]]) -> str | None:
    """The text of a message's ``content`` (text or post); None for other kinds."""
    try:
        body = json.loads(content)
    except json.JSONDecodeError:
        raise BadFeishuEvent("the message's content is not JSON") from None
    if kind == "text":
        return _named(str(body.get("text", "")), mentions)
    if kind == "post":
        return _named(_post_text(body), mentions)
    return None


_MAX_FILES = 50


def _media(name: str, default: str) -> str:
    return mimetypes.guess_type(name)[0] or default


def attachments_of(kind: object, content: str) -> list[Attachment]:
    """The images and files a message carries (an image, a file, audio, video, or the
    images of a post)."""
    try:
        body = json.loads(content)
    except json.JSONDecodeError:
        return []
    if not isinstance(body, dict):
        return []
    found: list[Attachment] = []
    if kind == "image" and body.get("image_key"):
        key = str(body["image_key"])
        found.append(Attachment(name=f"image-{key[-8:]}", media_type="image/*",
                                key=f"image:{key}"[:300]))  # fmt: skip
    elif kind in ("file", "audio", "media") and body.get("file_key"):
        default = {"audio": "audio/ogg", "media": "video/mp4"}.get(str(kind), "")
        name = str(body.get("file_name") or "") or f"{kind}-{str(body['file_key'])[-8:]}"
        size = body.get("file_size") if isinstance(body.get("file_size"), int) else None
        found.append(Attachment(name=name[:300], media_type=_media(name, default
                                or "application/octet-stream"), size=size,
                                key=f"file:{body['file_key']}"[:300]))  # fmt: skip
    elif kind == "post":
        post = body if "content" in body else next(
            (v for v in body.values() if isinstance(v, dict)), {}
        )  # fmt: skip
        for paragraph in post.get("content") or []:
            for item in paragraph if isinstance(paragraph, list) else []:
                if isinstance(item, dict) and item.get("tag") == "img" and item.get("image_key"):
                    key = str(item["image_key"])
                    found.append(Attachment(name=f"image-{key[-8:]}", media_type="image/*",
                                            key=f"image:{key}"[:300]))  # fmt: skip
    return found[:_MAX_FILES]


def _post_text(body: dict[str, Any]) -> str:
    """A rich-text post as plain text: its title, then each paragraph on its own line."""
    post = body
    if "content" not in post:  # the language-keyed form: {"zh_cn": {...}}
        post = next((v for v in body.values() if isinstance(v, dict)), {})
    lines = [str(post["title"])] if post.get("title") else []
    for paragraph in post.get("content") or []:
        parts = []
        for item in paragraph if isinstance(paragraph, list) else []:
            tag = item.get("tag")
            if tag in ("text", "md"):
                parts.append(str(item.get("text", "")))
            elif tag == "a":
                parts.append(f"{item.get('text', '')} ({item.get('href', '')})")
            elif tag == "at":
                parts.append(f"@{item.get('user_name') or item.get('user_id', '')}")
            elif tag == "code_block":
                parts.append(f"```{item.get('language', '')}\n{item.get('text', '')}\n```")
        lines.append("".join(parts))
    return "\n".join(lines)


def _named(text: str, mentions: list[dict[str, Any]]) -> str:
    """``@_user_1`` placeholders as the names they stand for."""
    for m in mentions:
        key, name = m.get("key"), m.get("name")
        if key and name:
            text = text.replace(str(key), f"@{name}")
    return text


def _without_bot(text: str, mentions: list[dict[str, Any]], bot_open_id: str | None) -> str:
    """The text without the bot's own @-mention (it addressed tether; it is not input)."""
    for m in mentions:
        if bot_open_id and (m.get("id") or {}).get("open_id") == bot_open_id and m.get("name"):
            text = text.replace(f"@{m['name']}", "")
    return " ".join(text.split(" ")).strip()
