"""``WebhookChannel``: inbound ``POST /channels/webhook/NAME``, outbound POSTs to ``url``.

Inbound, a request is answered only after its receipt is durable: 200 (``duplicate``
says whether it was seen before), 401 for a missing, wrong or stale signature (and for
every request when the channel has no secret: fail closed), 400 for a body that is not
an event; nothing is recorded for a refused request. Outbound, each delivery is one
signed POST with an ``Idempotency-Key``; the answer is translated by
:func:`~tether.channels.webhook.errors.delivery_result`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp import web

from tether.channels.contract import (
    ChannelCapabilities,
    Delivery,
    DeliveryResult,
    HttpRoute,
    Inbox,
    Permanent,
    RetryAfter,
)
from tether.channels.webhook.config import WebhookConfig
from tether.channels.webhook.errors import BadEvent, SignatureRejected, delivery_result
from tether.channels.webhook.events import sign, to_inbound, verify
from tether.channels.webhook.render import body_of

__all__ = ["WebhookChannel"]

log = logging.getLogger(__name__)


def _json(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


class WebhookChannel:
    """One ``[channels.webhook.NAME]``."""

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        secret: bytes | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = f"webhook.{name}"
        self.path = f"/channels/webhook/{name}"
        self.config = config
        self.secret = secret
        self.clock = clock
        self.capabilities = ChannelCapabilities(
            push=True,
            max_message_bytes=config.max_message_bytes,
            status=config.status != "off",
            edit=config.status == "edit",
            edit_interval=config.edit_interval,
        )
        self._http: aiohttp.ClientSession | None = None

    # ---- inbound -------------------------------------------------------------------

    def routes(self, inbox: Inbox) -> Sequence[HttpRoute]:
        async def handle(request: web.Request) -> web.Response:
            return await self._inbound(inbox, request)

        return [HttpRoute(method="POST", path=self.path, handler=handle)]

    async def _inbound(self, inbox: Inbox, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is None:
            return _json(401, error="unauthorized", message="this channel has no secret")
        try:
            verify(
                self.secret,
                request.headers,
                body,
                now=self.clock(),
                window=self.config.freshness,
            )
        except SignatureRejected as exc:
            log.info("! webhook request refused", extra={"channel": self.name, "why": str(exc)})
            return _json(401, error="unauthorized", message=str(exc))
        try:
            message = to_inbound(
                self.name, body, bot_id=self.config.bot_id, trigger=self.config.group_trigger
            )
        except BadEvent as exc:
            return _json(400, error="invalid_params", message=str(exc))
        accepted = await inbox.accept(message)
        return _json(200, ok=True, duplicate=accepted.duplicate)

    async def start(self, inbox: Inbox) -> None:
        """Nothing to open: the platform comes to :meth:`routes`."""

    # ---- outbound ------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        if not self.config.url:
            return Permanent(reason=f"[channels.webhook.{self.name[8:]}] url is not set")
        if self.secret is None:
            return Permanent(reason="this channel has no secret to sign with")
        body = body_of(delivery)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.idempotency_key,
            **sign(self.secret, body, self.clock()),
        }
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.delivery_timeout)
            )
        try:
            async with self._http.post(self.config.url, data=body, headers=headers) as resp:
                answer = await resp.content.read(64 * 1024)
                return delivery_result(resp.status, resp.headers, answer)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return RetryAfter(seconds=0.0, reason=f"{type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
