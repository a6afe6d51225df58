"""Inbound webhook events: the signature check, and the JSON body as an
:class:`~tether.channels.contract.InboundMessage`.

A request is signed with the channel's shared secret: ``X-Tether-Timestamp`` (Unix
seconds) and ``X-Tether-Signature: sha256=HEX``, the HMAC-SHA256 of
``TIMESTAMP + "." + BODY``. A timestamp outside the freshness window, a missing or
malformed header, or a wrong signature is refused before the body is read as JSON.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from tether.channels.contract import Attachment, ChatKind, InboundMessage, Sender
from tether.channels.webhook.errors import BadEvent, SignatureRejected

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookEvent",
    "sign",
    "to_inbound",
    "verify",
]

TIMESTAMP_HEADER = "X-Tether-Timestamp"
SIGNATURE_HEADER = "X-Tether-Signature"
_PREFIX = "sha256="

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: float) -> dict[str, str]:
    """The headers that sign ``body`` at ``timestamp``."""
    ts = str(int(timestamp))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: _PREFIX + _mac(secret, ts, body)}


def verify(
    secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float, window: float
) -> None:
    """Raise :class:`SignatureRejected` unless ``body`` is signed, correctly, recently."""
    ts = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not ts or not signature:
        raise SignatureRejected("unsigned: X-Tether-Timestamp and X-Tether-Signature are required")
    if not ts.isdigit() or len(ts) > 12:
        raise SignatureRejected("X-Tether-Timestamp must be Unix seconds")
    if abs(now - int(ts)) > window:
        raise SignatureRejected(f"stale: the timestamp is more than {window:g} s from now")
    if not signature.startswith(_PREFIX):
        raise SignatureRejected("X-Tether-Signature must be sha256=HEX")
    expected = _mac(secret, ts, body)
    if not hmac.compare_digest(signature[len(_PREFIX) :].encode(), expected.encode()):
        raise SignatureRejected("wrong signature")


class WebhookChat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    type: Literal["p2p", "group"] = "p2p"
    thread: Ident | None = None


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /channels/webhook/NAME`` (docs/channels.md)."""

    event_id: Ident
    chat: WebhookChat
    sender: Sender
    text: Annotated[str, msgspec.Meta(max_length=100_000)] = ""
    message_id: Ident | None = None
    mentions: list[Annotated[str, msgspec.Meta(max_length=200)]] = []
    addressed: bool | None = None
    reply_to: Ident | None = None
    quoted: Annotated[str, msgspec.Meta(max_length=20_000)] | None = None
    attachments: list[Attachment] = []
    lang: Literal["en", "zh"] | None = None
    sent_at: float | None = None


_decoder = msgspec.json.Decoder(WebhookEvent)


def to_inbound(
    channel: str, body: bytes, *, bot_id: str, trigger: Literal["mention", "all"]
) -> InboundMessage:
    """Decode a verified body; :class:`BadEvent` if it is not an event."""
    try:
        event = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadEvent(f"not a webhook event: {exc}") from None
    text = event.text
    mentioned = bot_id in event.mentions
    lead = f"@{bot_id}"
    if text.lstrip().startswith(lead):
        text, mentioned = text.lstrip()[len(lead) :].lstrip(), True
    if event.chat.type == "p2p":
        addressed = True
    elif event.addressed is not None:
        addressed = event.addressed
    else:
        addressed = mentioned or trigger == "all"
    kind: ChatKind = (
        "p2p" if event.chat.type == "p2p" else ("topic" if event.chat.thread else "group")
    )
    return InboundMessage(
        channel=channel,
        event_id=event.event_id,
        chat_id=event.chat.id,
        chat_kind=kind,
        thread=event.chat.thread,
        sender=event.sender,
        text=text,
        message_id=event.message_id,
        mentions=list(event.mentions),
        addressed=addressed or (trigger == "all"),
        reply_to=event.reply_to,
        quoted=event.quoted,
        attachments=list(event.attachments),
        lang=event.lang,
        sent_at=event.sent_at,
    )
