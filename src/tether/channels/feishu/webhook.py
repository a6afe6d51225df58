"""Feishu's webhook mode: events POSTed to ``/channels/feishu`` on the gateway.

Checks, in order, each failing closed:

- the body is at most 1 MB of JSON; an ``{"encrypt": …}`` body is decrypted with the
  app's encrypt key (AES-256-CBC, key ``sha256(encrypt_key)``, the IV first);
- a ``url_verification`` challenge is answered at once if its token is the app's;
- an event must be signed: ``X-Lark-Signature`` is
  ``sha256(timestamp + nonce + encrypt_key + body)``, compared in constant time, and
  ``X-Lark-Request-Timestamp`` must be within ``freshness`` of now (the SDK checks no
  time at all). Header names are matched whatever their case (the SDK's own handler
  fails on lowercase ones);
- the event's ``header.token`` must be the verification token.

Webhook mode without both the verification token and the encrypt key refuses every
request. An accepted event is answered only after its receipt is durable; a failure is a
500, and Feishu delivers it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["MAX_BODY", "WebhookEndpoint", "WebhookRejected", "decrypt", "encrypt", "signature"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class WebhookRejected(Exception):
    """A request that is not the app's: unsigned, wrongly signed, stale or mis-tokened."""


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode()).digest()


def decrypt(encrypt_key: str, data: str) -> bytes:
    """Feishu's ``encrypt`` field as the JSON it hides."""
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise WebhookRejected("the encrypted body is not base64") from None
    if len(raw) < 32 or len(raw) % 16:
        raise WebhookRejected("the encrypted body has the wrong length")
    decryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise WebhookRejected("the body does not decrypt with this app's key") from None


def encrypt(encrypt_key: str, plain: bytes, iv: bytes) -> str:
    """What Feishu would send (for tests and the stand-in)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return ""


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class WebhookEndpoint:
    """The handler behind ``POST /channels/feishu``."""

    def __init__(
        self,
        *,
        verification_token: str | None,
        encrypt_key: str | None,
        freshness: float,
        take: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verification_token = verification_token
        self.encrypt_key = encrypt_key
        self.freshness = freshness
        self.take = take
        self.clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return web.json_response({"msg": "too large"}, status=413)
        try:
            envelope = self.open(request.headers, body)
        except WebhookRejected as exc:
            log.info("! feishu webhook request refused", extra={"why": str(exc)})
            return web.json_response({"msg": str(exc)}, status=401)
        if envelope.get("type") == "url_verification":
            return web.json_response({"challenge": envelope.get("challenge", "")})
        try:
            answer = await self.take(envelope)
        except Exception as exc:  # noqa: BLE001 - a 500 makes Feishu deliver it again
            log.warning(
                "! feishu webhook event not taken", extra={"why": f"{type(exc).__name__}: {exc}"}
            )
            return web.json_response({"msg": "not taken"}, status=500)
        return web.json_response(answer if answer is not None else {"msg": "success"})

    def open(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The request's event (or challenge), once every check passed."""
        token, key = self.verification_token, self.encrypt_key
        if not token or not key:
            raise WebhookRejected("the channel has no verification token and encrypt key")
        outer = _json(body)
        if "encrypt" not in outer:
            raise WebhookRejected("the body is not encrypted (set an encrypt key in the app)")
        inner = _json(decrypt(key, str(outer["encrypt"])))
        if inner.get("type") == "url_verification":
            if not _same(str(inner.get("token", "")), token):
                raise WebhookRejected("wrong verification token")
            return inner
        stamp = _header(headers, "X-Lark-Request-Timestamp")
        nonce = _header(headers, "X-Lark-Request-Nonce")
        given = _header(headers, "X-Lark-Signature")
        if not (stamp and nonce and given):
            raise WebhookRejected("the request is not signed")
        if not _same(given.lower(), signature(stamp, nonce, key, body)):
            raise WebhookRejected("wrong signature")
        try:
            age = abs(self.clock() - float(stamp))
        except ValueError:
            raise WebhookRejected("the timestamp is not a number") from None
        if age > self.freshness:
            raise WebhookRejected(f"the timestamp is {age:.0f} s away from now")
        header = inner.get("header")
        given_token = header.get("token", "") if isinstance(header, dict) else ""
        if not _same(str(given_token), token):
            raise WebhookRejected("wrong verification token")
        return inner


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(value, dict):
        raise WebhookRejected("the body is not a JSON object")
    return value
