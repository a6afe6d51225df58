"""Feishu's open API for the channel: send and reply, through the ``lark-oapi`` client,
with every failure translated once into a :data:`DeliveryResult`.

The SDK retries nothing and never refreshes a token the server rejected, and even its
``a*`` methods fetch tokens with blocking ``requests``. So each call runs the SDK's
synchronous method in a worker thread (the gateway's loop never blocks), and here:

- 230020 (frequency limit), 99991400 / HTTP 429 (rate limit; ``x-ogw-ratelimit-reset``
  says how long), HTTP 5xx, a body that is not JSON, and network errors are worth a
  retry (:class:`RetryAfter`);
- 99991663 / 99991668 (a rejected token): the SDK's cached token is dropped and the call
  made once more;
- anything else (content, permission, a message that does not exist) is
  :class:`Permanent`: sending it again cannot help.

Sends are paced (:mod:`.limits`) to stay under Feishu's rates per chat and per app.

Every create and reply carries a ``uuid`` derived from the delivery's idempotency key, so
Feishu makes at most one message of it however often it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import time
from typing import Any

from tether.channels.contract import Delivered, DeliveryResult, Permanent, RetryAfter
from tether.channels.feishu.events import BadFeishuEvent, text_of
from tether.channels.feishu.limits import SendPacer, Window
from tether.errors import DeliveryFailed, TooLarge

__all__ = ["FeishuApi", "result_of"]

log = logging.getLogger(__name__)

RETRY_CODES = frozenset({230020, 99991400})
TOKEN_CODES = frozenset({99991663, 99991668})
APP_CALLS_PER_SECOND = 45
"""Sends started in any one second, at most (Feishu refuses an app's 51st)."""
_NAME_TTL = 3600.0
_NAME_RETRY = 300.0  # a name that could not be read is asked for again after this
_NAMES_KEPT = 5000
IMAGE_UPLOAD_BYTES = 10 * 1024 * 1024
"""Feishu takes images up to 10 MB (a larger one goes as a file)."""
FILE_UPLOAD_BYTES = 30 * 1024 * 1024
"""Feishu takes files up to 30 MB."""
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}
)
_FILE_TYPES = {
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xls",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "ppt",
    "video/mp4": "mp4",
    "audio/ogg": "opus",
}


def message_uuid(key: str) -> str:
    """Feishu's ``uuid`` (at most 50 characters) for an idempotency key."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def result_of(
    status: int | None, code: int | None, msg: str, headers: dict[str, str], data: Any
) -> DeliveryResult:
    """What one API answer means for a delivery. The HTTP status counts first: a 5xx or
    429 is not a success whatever its body says."""
    reset = _reset_of(headers)
    if code in RETRY_CODES or status == 429:
        return RetryAfter(seconds=reset or 1.0, reason=f"rate limited ({code or status}): {msg}")
    if status is not None and status >= 500:
        return RetryAfter(seconds=reset or 0.0, reason=f"HTTP {status}: {msg}")
    if code == 0 and (status is None or 200 <= status < 300):
        message_id = getattr(data, "message_id", None) if data is not None else None
        return Delivered(message_id=message_id)
    return Permanent(reason=f"Feishu refused it ({code}, HTTP {status}): {msg}")


def _reset_of(headers: dict[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "x-ogw-ratelimit-reset":
            try:
                return min(max(float(value), 0.0), 3600.0)
            except ValueError:
                return None
    return None


class FeishuApi:
    """The calls the channel makes, on one app's ``lark.Client``."""

    def __init__(self, app_id: str, app_secret: str, *, base_url: str, timeout: float) -> None:
        from tether.channels.feishu.sdk import load

        lark = load()  # seconds to import: only when the channel is on

        self.app_id = app_id
        self._lark = lark
        self.pacer = SendPacer()
        self.window = Window(APP_CALLS_PER_SECOND)
        self._names: dict[str, tuple[str, float]] = {}
        self.client = (
            lark.Client.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .domain(base_url)
            .timeout(timeout)
            .log_level(lark.LogLevel.WARNING)
            .build()
        )

    def _drop_token(self) -> None:
        from lark_oapi.core.token.manager import TokenManager

        TokenManager.cache.set(f"self_tenant_token:{self.app_id}", "", 0)

    async def bot_open_id(self) -> str | None:
        """The bot's own open_id (group messages are for tether when they @-mention it)."""
        from lark_oapi.core.enum import AccessTokenType, HttpMethod
        from lark_oapi.core.model import BaseRequest

        request = (
            BaseRequest.builder()
            .http_method(HttpMethod.GET)
            .uri("/open-apis/bot/v3/info")
            .token_types({AccessTokenType.TENANT})
            .build()
        )
        try:
            response = await asyncio.to_thread(self.client.request, request)
            body = json.loads(response.raw.content or b"{}")
        except Exception as exc:  # noqa: BLE001 - said, and group @-mentions are then not seen
            log.warning("! feishu bot info not read", extra={"why": f"{type(exc).__name__}: {exc}"})
            return None
        open_id = (body.get("bot") or {}).get("open_id")
        return str(open_id) if open_id else None

    async def send(
        self, *, chat_id: str, text: str, key: str, reply_to: str | None = None
    ) -> DeliveryResult:
        """Send ``text`` (Markdown) as a post in ``chat_id``, threaded under ``reply_to``."""
        content = json.dumps(
            {"zh_cn": {"content": [[{"tag": "md", "text": text}]]}}, ensure_ascii=False
        )
        return await self.send_content(
            chat_id=chat_id, msg_type="post", content=content, key=key, reply_to=reply_to
        )

    async def send_content(
        self, *, chat_id: str, msg_type: str, content: str, key: str, reply_to: str | None = None
    ) -> DeliveryResult:
        """Send a message of ``msg_type`` (``post``, ``interactive``) with this content."""
        await self.pacer.wait(chat_id)  # within Feishu's per-chat and per-app rates
        request = self._request(chat_id, msg_type, content, message_uuid(key), reply_to)

        def paced() -> Any:
            self.window.enter()  # however late this thread started it
            return request()

        return await self._call(paced)

    async def patch(self, message_id: str, content: str) -> DeliveryResult:
        """Replace a card message's content (the card must have ``update_multi``)."""
        im = self._lark.api.im.v1
        body = im.PatchMessageRequestBody.builder().content(content).build()
        req = im.PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
        result = await self._call(lambda: self.client.im.v1.message.patch(req))
        if isinstance(result, Delivered):  # a PATCH answers no id: it is the same message
            return Delivered(message_id=message_id)
        return result

    async def create_card(self, card: str) -> str | None:
        """A CardKit card entity (``cardkit:card:write``): its id, or None."""
        kit = self._lark.api.cardkit.v1
        body = kit.CreateCardRequestBody.builder().type("card_json").data(card).build()
        req = kit.CreateCardRequest.builder().request_body(body).build()
        data = await self._read(lambda: self.client.cardkit.v1.card.create(req), "card entity")
        card_id = getattr(data, "card_id", None)
        return str(card_id) if card_id else None

    async def card_text(
        self, card_id: str, element_id: str, text: str, sequence: int
    ) -> DeliveryResult:
        """Replace the whole text of a card entity's element (``sequence`` rises strictly
        per card, across every CardKit call)."""
        kit = self._lark.api.cardkit.v1
        body = (
            kit.ContentCardElementRequestBody.builder().content(text).sequence(sequence)
            .uuid(message_uuid(f"{card_id}:{sequence}")).build()
        )  # fmt: skip
        req = (
            kit.ContentCardElementRequest.builder().card_id(card_id).element_id(element_id)
            .request_body(body).build()
        )  # fmt: skip
        return await self._call(lambda: self.client.cardkit.v1.card_element.content(req))

    async def card_settings(self, card_id: str, settings: str, sequence: int) -> DeliveryResult:
        kit = self._lark.api.cardkit.v1
        body = (
            kit.SettingsCardRequestBody.builder().settings(settings).sequence(sequence)
            .uuid(message_uuid(f"{card_id}:{sequence}")).build()
        )  # fmt: skip
        req = kit.SettingsCardRequest.builder().card_id(card_id).request_body(body).build()
        return await self._call(lambda: self.client.cardkit.v1.card.settings(req))

    def _request(
        self, chat_id: str, msg_type: str, content: str, uuid: str, reply_to: str | None
    ) -> Any:
        im = self._lark.api.im.v1
        if reply_to:
            body = (
                im.ReplyMessageRequestBody.builder().content(content).msg_type(msg_type)
                .uuid(uuid).build()
            )  # fmt: skip
            req = im.ReplyMessageRequest.builder().message_id(reply_to).request_body(body).build()
            return lambda: self.client.im.v1.message.reply(req)
        body = (
            im.CreateMessageRequestBody.builder().receive_id(chat_id).msg_type(msg_type)
            .content(content).uuid(uuid).build()
        )  # fmt: skip
        req = (
            im.CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
        )
        return lambda: self.client.im.v1.message.create(req)

    async def _invoke(self, call: Any) -> Any:
        """``call()``'s response in a thread; a rejected token is dropped and the call made
        once more. Raises what the SDK raises (network errors, bodies that are not JSON)."""
        response = await asyncio.to_thread(call)
        if response.code in TOKEN_CODES:
            log.info("feishu token rejected: fetching a new one", extra={"code": response.code})
            self._drop_token()
            response = await asyncio.to_thread(call)
        return response

    async def _call(self, call: Any) -> DeliveryResult:
        try:
            response = await self._invoke(call)
        except Exception as exc:  # noqa: BLE001 - network errors, non-JSON bodies: transient
            return RetryAfter(seconds=0.0, reason=f"{type(exc).__name__}: {exc}")
        return self._result(response)

    @staticmethod
    def _result(response: Any) -> DeliveryResult:
        if response.code in TOKEN_CODES:
            return RetryAfter(seconds=0.0, reason="the token was rejected twice")
        raw = response.raw
        status = raw.status_code if raw is not None else None
        headers = dict(raw.headers) if raw is not None and raw.headers else {}
        data = getattr(response, "data", None)  # (a PATCH answers none)
        return result_of(status, response.code, response.msg or "", headers, data)

    async def _read(self, call: Any, what: str) -> Any:
        """The data of a read, or None (said in the log) when it failed."""
        try:
            response = await self._invoke(call)
        except Exception as exc:  # noqa: BLE001 - a read only adds context: go on without it
            log.info(f"feishu {what} not read", extra={"why": f"{type(exc).__name__}: {exc}"})
            return None
        if response.code != 0:
            log.info(f"feishu {what} not read", extra={"code": response.code, "why": response.msg})
            return None
        return response.data

    async def user_name(self, open_id: str) -> str:
        """A person's name (``contact:user.base:readonly``), cached for an hour; "" when it
        cannot be read."""
        now = time.monotonic()
        cached = self._names.get(open_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        contact = self._lark.api.contact.v3
        req = contact.GetUserRequest.builder().user_id(open_id).user_id_type("open_id").build()
        data = await self._read(lambda: self.client.contact.v3.user.get(req), "user name")
        user = getattr(data, "user", None)
        name = str(getattr(user, "name", "") or "")
        if len(self._names) >= _NAMES_KEPT:
            self._names.pop(next(iter(self._names)))
        self._names[open_id] = (name, now + (_NAME_TTL if name else _NAME_RETRY))
        return name

    async def download(self, message_id: str, key: str, kind: str, limit: int) -> bytes:
        """A message's image or file (``im:resource``): its bytes, at most ``limit``.
        Raises ``TooLarge`` past it and ``DeliveryFailed`` when Feishu does not give it."""
        im = self._lark.api.im.v1
        req = (
            im.GetMessageResourceRequest.builder().message_id(message_id).file_key(key)
            .type(kind).build()
        )  # fmt: skip
        try:
            response = await self._invoke(lambda: self.client.im.v1.message_resource.get(req))
        except Exception as exc:  # network errors, bodies that are not JSON: said as the reason
            raise DeliveryFailed(f"Feishu did not answer: {type(exc).__name__}") from exc
        if response.code != 0 or response.file is None:
            raise DeliveryFailed(f"Feishu refused it ({response.code}): {response.msg or ''}")
        data: bytes = response.file.getvalue()
        if len(data) > limit:
            raise TooLarge(f"{len(data)} bytes, over the {limit}-byte limit")
        return data

    async def send_file(
        self,
        *,
        chat_id: str,
        name: str,
        media_type: str,
        content: bytes,
        key: str,
        reply_to: str | None = None,
    ) -> DeliveryResult:
        """Upload ``content`` (``im:resource``) and send it as an image or a file message.
        The upload is made again on a retry; the message's ``uuid`` keeps it one message."""
        im = self._lark.api.im.v1
        # each call builds its request anew: the SDK consumes the body (a token retry
        # makes the call again)

        def image() -> Any:
            body = im.CreateImageRequestBody.builder().image_type("message")
            built = body.image(io.BytesIO(content)).build()
            return self.client.im.v1.image.create(
                im.CreateImageRequest.builder().request_body(built).build()
            )

        def file() -> Any:
            body = im.CreateFileRequestBody.builder().file_name(name)
            body = body.file_type(_FILE_TYPES.get(media_type, "stream"))
            built = body.file(io.BytesIO(content)).build()
            return self.client.im.v1.file.create(
                im.CreateFileRequest.builder().request_body(built).build()
            )

        if media_type in IMAGE_TYPES and len(content) <= IMAGE_UPLOAD_BYTES:
            msg_type, upload = "image", image
        elif len(content) > FILE_UPLOAD_BYTES:
            return Permanent(reason=f"Feishu takes files up to {FILE_UPLOAD_BYTES} bytes")
        else:
            msg_type, upload = "file", file
        uploaded = await self._upload(upload, f"{msg_type}_key")
        if not isinstance(uploaded, str):
            return uploaded
        return await self.send_content(
            chat_id=chat_id, msg_type=msg_type, key=key, reply_to=reply_to,
            content=json.dumps({f"{msg_type}_key": uploaded}),
        )  # fmt: skip

    async def _upload(self, call: Any, field: str) -> str | DeliveryResult:
        """An upload's image or file key (``field`` of its answer), or why there is none."""

        def paced() -> Any:
            self.window.enter()  # an upload counts against the app's rate
            return call()

        try:
            response = await self._invoke(paced)
        except Exception as exc:  # noqa: BLE001 - network errors, non-JSON bodies: transient
            return RetryAfter(seconds=0.0, reason=f"{type(exc).__name__}: {exc}")
        result = self._result(response)
        if not isinstance(result, Delivered):
            return result
        key = getattr(getattr(response, "data", None), field, None)
        return str(key) if key else Permanent(reason=f"Feishu's upload answered no {field}")

    async def message_text(self, message_id: str) -> str | None:
        """The text of a message (``im:message:readonly``; the one a message replies to),
        or None when it cannot be read or has no text."""
        im = self._lark.api.im.v1
        req = im.GetMessageRequest.builder().message_id(message_id).build()
        data = await self._read(lambda: self.client.im.v1.message.get(req), "replied-to message")
        items = getattr(data, "items", None) or []
        if not items:
            return None
        item = items[0]
        content = getattr(getattr(item, "body", None), "content", None)
        if not content:
            return None
        mentions = [{"key": m.key, "name": m.name} for m in getattr(item, "mentions", None) or []]
        try:
            return text_of(item.msg_type, content, mentions)
        except BadFeishuEvent:
            return None
