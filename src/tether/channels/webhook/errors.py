"""Every way the webhook's peers fail, translated once: inbound refusals, and the HTTP
outcome of a delivery as a :data:`~tether.channels.contract.DeliveryResult`."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import msgspec

from tether.channels.contract import Delivered, DeliveryResult, Permanent, RetryAfter

__all__ = ["BadEvent", "SignatureRejected", "delivery_result", "retry_after_seconds"]


class SignatureRejected(Exception):
    """An inbound request that is unsigned, wrongly signed or stale (HTTP 401)."""


class BadEvent(Exception):
    """A signed request whose body is not a webhook event (HTTP 400)."""


class _Answer(msgspec.Struct, kw_only=True):
    message_id: str | None = None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date), if present and sane."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), 3600.0)


def delivery_result(status: int, headers: Mapping[str, str], body: bytes) -> DeliveryResult:
    """What an HTTP answer to a delivery means."""
    if 200 <= status < 300:
        try:
            answer = msgspec.json.decode(body, type=_Answer) if body.strip() else _Answer()
        except msgspec.DecodeError:
            answer = _Answer()
        return Delivered(message_id=answer.message_id)
    hint = retry_after_seconds(headers)
    if status in (408, 425, 429) or status >= 500:
        return RetryAfter(seconds=hint or 0.0, reason=f"HTTP {status}")
    return Permanent(reason=f"HTTP {status}: {body[:200].decode(errors='replace')}")
