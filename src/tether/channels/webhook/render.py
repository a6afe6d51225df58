"""Outbound webhook bodies: a :class:`~tether.channels.contract.Delivery` as JSON.

The receiver gets ``{"delivery": KEY, "kind", "conversation", "chat": {"id", "thread"},
"text", "run_id", "reply_to", "request", "choices", "edit"}`` (``edit``: the
``message_id`` you answered for the message this one replaces, for a run's status), signed like inbound requests,
with the idempotency key also in the ``Idempotency-Key`` header: the same key for every
attempt of one delivery, so a receiver can drop a repeat.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tether.channels.contract import Delivery

__all__ = ["body_of"]


def body_of(delivery: Delivery) -> bytes:
    data: dict[str, Any] = {
        "delivery": delivery.idempotency_key,
        "kind": delivery.kind,
        "conversation": delivery.conversation,
        "chat": {"id": delivery.chat_id, "thread": delivery.thread},
        "text": delivery.text,
        "run_id": delivery.run_id,
        "reply_to": delivery.reply_to,
        "request": delivery.request,
        "choices": list(delivery.choices),
        "edit": delivery.edit,
    }
    return msgspec.json.encode(data)
