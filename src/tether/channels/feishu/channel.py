"""``FeishuChannel``: Feishu/Lark chats as a tether channel.

Inbound, over the long connection (:mod:`.connection`) or, in webhook mode, as signed
and encrypted POSTs to ``/channels/feishu`` (:mod:`.webhook`): each
``im.message.receive_v1`` event becomes an :class:`InboundMessage` and is handed to the
gateway's inbox. Its ack
waits for the durable receipt (bounded by ``ack_budget``), so an event is never lost, and
an event Feishu delivers twice is a duplicate receipt, never a second run. Every other
event type is acked and ignored on purpose.

Outbound (:mod:`.api`, :mod:`.cards`), every message carries a ``uuid`` from its
idempotency key. A run's status is one card, PATCHed in place. A request is a card with
buttons, and its outcome is shown on that card (or said in a post when the card is not
known to this gateway, after a restart). Everything else is a post (Markdown), threaded
under the message it answers. A click on a request button is the command it stands for,
answered at once (:meth:`Inbox.answer`) with a toast.

With no app secret in the environment the channel connects to nothing and refuses every
delivery: it fails closed, and says so in the log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tether.channels.contract import (
    Attachment,
    ChannelCapabilities,
    Delivered,
    Delivery,
    DeliveryResult,
    HttpRoute,
    InboundMessage,
    Inbox,
    Permanent,
    RetryAfter,
    Sender,
    StreamUpdate,
)
from tether.channels.feishu.api import FeishuApi
from tether.channels.feishu.cards import (
    CARD_CLICKED,
    STREAM_ELEMENT,
    as_content,
    click_of,
    command_of,
    decided_card,
    fit,
    request_card,
    status_card,
    stream_card,
)
from tether.channels.feishu.connection import LongConnection
from tether.channels.feishu.events import (
    IGNORED,
    MESSAGE_RECEIVED,
    BadFeishuEvent,
    event_type,
    to_inbound,
)
from tether.channels.feishu.webhook import WebhookEndpoint
from tether.config import FeishuConfig
from tether.errors import DeliveryFailed

__all__ = ["FeishuChannel"]

log = logging.getLogger(__name__)

_STREAMS_KEPT = 1_000


@dataclass
class _Stream:
    """A reply streaming into a CardKit card."""

    card_id: str | None = None
    message_id: str | None = None
    sequence: int = 0
    """The last CardKit ``sequence`` used on the card."""
    broken: bool = False
    finished: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class FeishuChannel:
    """The ``[channels.feishu]`` app."""

    name = "feishu"

    def __init__(
        self,
        config: FeishuConfig,
        secret: str | None,
        *,
        verification_token: str | None = None,
        encrypt_key: str | None = None,
    ) -> None:
        self.config = config
        self.secret = secret
        self.webhook = WebhookEndpoint(
            verification_token=verification_token,
            encrypt_key=encrypt_key,
            freshness=config.freshness,
            take=self._take,
        )
        self.capabilities = ChannelCapabilities(
            push=True,
            status=True,
            edit=True,
            edit_interval=0.5,  # Feishu allows 5 PATCHes a second to one message; 1-2 advised
            cards=True,
            buttons=True,
            streaming=config.streaming,
            files=True,
            max_message_bytes=config.max_message_bytes,
        )
        self._streams: collections.OrderedDict[str, _Stream] = collections.OrderedDict()
        """A run's reply card (CardKit) while it streams, by run id."""
        self.bot_open_id: str | None = None
        self.api: FeishuApi | None = None
        self.connection: LongConnection | None = None
        self._inbox: Inbox | None = None
        self._watch: asyncio.Task[None] | None = None

    def routes(self, inbox: Inbox) -> Sequence[HttpRoute]:
        self._inbox = inbox
        if self.config.mode != "webhook":
            return []
        return [HttpRoute(method="POST", path="/channels/feishu", handler=self.webhook.handle)]

    async def _take(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """A webhook event (or a card callback: its answer is the toast)."""
        return await self._frame(envelope, "event")

    async def start(self, inbox: Inbox) -> None:
        """Connect: learn the bot's own id, then open the long connection."""
        self._inbox = inbox
        if self.secret is None:
            return
        config = self.config
        self.api = await asyncio.to_thread(
            FeishuApi,
            config.app_id,
            self.secret,
            base_url=config.base_url,
            timeout=config.request_timeout,
        )
        self.bot_open_id = await self.api.bot_open_id()
        if config.mode == "webhook":
            log.info("feishu channel started (webhook)", extra={"bot": self.bot_open_id})
            return
        self.connection = LongConnection(
            config.app_id,
            self.secret,
            domain=config.base_url,
            handle=self._frame,
            loop=asyncio.get_running_loop(),
            ack_budget=config.ack_budget,
        )
        await asyncio.to_thread(self.connection.start)
        self._watch = asyncio.create_task(self.connection.watch(), name="feishu:watch")
        log.info("feishu channel started", extra={"app_id": config.app_id, "bot": self.bot_open_id})

    async def _frame(self, envelope: dict[str, Any], kind: str) -> dict[str, Any] | None:
        """One event off the long connection: returns once it is durable (or ignored)."""
        try:
            kind_of_event = event_type(envelope)
        except BadFeishuEvent as exc:
            log.warning("! feishu frame that is no event: ignored", extra={"why": str(exc)})
            return None
        if kind_of_event == CARD_CLICKED:  # in an event or a card frame, as Feishu likes
            return await self._clicked(envelope)
        if kind == "card":
            return None
        if kind_of_event != MESSAGE_RECEIVED:
            if kind_of_event not in IGNORED:
                log.info("feishu event of a type tether ignores", extra={"type": kind_of_event})
            return None
        try:
            message = to_inbound(
                envelope,
                channel=self.name,
                bot_open_id=self.bot_open_id,
                trigger=self.config.group_trigger,
            )
        except BadFeishuEvent as exc:
            log.warning("! feishu message event not understood: ignored", extra={"why": str(exc)})
            return None
        if message is None:
            return None
        if self._inbox is None:
            raise RuntimeError("the channel has no inbox yet")
        await self._inbox.accept(await self._with_context(message))
        return None

    async def _clicked(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """A button on a request card: the command it stands for, sent by whoever clicked,
        answered now; the answer is the click's toast (a refusal says why)."""
        click = click_of(envelope)
        if click is None:
            log.info("feishu card click that is not on a tether button: ignored")
            return None
        if self._inbox is None:
            raise RuntimeError("the channel has no inbox yet")
        message = InboundMessage(
            channel=self.name,
            event_id=click.event_id,
            chat_id=click.chat_id,
            chat_kind="topic" if click.thread else "p2p",
            thread=click.thread,
            sender=Sender(id=click.open_id),
            text=command_of(click),
            addressed=True,
        )
        answered = await self._inbox.answer(message)
        if answered.duplicate:
            return None  # Feishu sent the click again: it was answered the first time
        text = " ".join(answered.replies)[:300] or "OK"  # a refusal says why
        return {"toast": {"type": "info", "content": text}}

    async def _with_context(self, message: InboundMessage) -> InboundMessage:
        """The sender's name (in a group) and the text of the message it replies to, each
        read within a share of the ack budget; a message goes on without what is slow."""
        api = self.api
        if api is None or not message.addressed:
            return message
        want_name = message.chat_kind != "p2p" and not message.sender.name
        lookups: dict[str, asyncio.Task[Any]] = {}
        if want_name:
            lookups["name"] = asyncio.create_task(api.user_name(message.sender.id))
        if message.reply_to and message.quoted is None:
            lookups["quoted"] = asyncio.create_task(api.message_text(message.reply_to))
        if not lookups:
            return message
        done, late = await asyncio.wait(lookups.values(), timeout=self.config.ack_budget / 3)
        for task in late:
            task.cancel()
        if late:
            log.info("feishu message context not read in time: going on without it")
        found = {k: t.result() for k, t in lookups.items() if t in done and not t.exception()}
        changes: dict[str, Any] = {}
        if found.get("name"):
            changes["sender"] = msgspec.structs.replace(message.sender, name=found["name"][:200])
        if found.get("quoted"):
            changes["quoted"] = found["quoted"][:20_000]
        return msgspec.structs.replace(message, **changes) if changes else message

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        if self.secret is None:
            return Permanent(
                reason=f"the Feishu channel has no app secret (${self.config.app_secret_env})"
            )
        if self.api is None:  # the gateway is still starting: its outbox runs already
            return RetryAfter(seconds=1.0, reason="the Feishu channel is still starting")
        api = self.api
        if delivery.kind == "status":
            content = as_content(status_card(delivery.text))
            if delivery.edit:
                return await api.patch(delivery.edit, content)
            return await self._send_card(delivery, content)
        if delivery.kind == "request" and delivery.request:
            card = request_card(delivery.text, delivery.request, delivery.choices, delivery.thread)
            return await self._send_card(delivery, as_content(card))
        if delivery.kind == "reply" and (finished := await self._finish_stream(delivery)):
            return finished
        if delivery.request and delivery.edit and delivery.asked is not None:
            # a request decided, answered or expired: its card shows the outcome
            card = decided_card(delivery.asked, delivery.text)
            result = await api.patch(delivery.edit, as_content(card))
            if not isinstance(result, Permanent):
                return result  # (else too old to edit: it is said instead)
        return await api.send(
            chat_id=delivery.chat_id,
            text=delivery.text,
            key=delivery.idempotency_key,
            reply_to=delivery.reply_to,
        )

    async def stream(self, update: StreamUpdate) -> None:
        """The reply so far, into the run's CardKit card (created by the first update).
        Best effort: a failure ends streaming for the run, and its reply is a post."""
        if self.api is None or not self.config.streaming:
            return
        stream = self._streams.get(update.run_id)
        if stream is None:
            stream = self._streams[update.run_id] = _Stream()
            while len(self._streams) > _STREAMS_KEPT:
                self._streams.popitem(last=False)
        async with stream.lock:
            if stream.broken or stream.finished:
                return
            if stream.card_id is None:
                await self._open_stream(stream, update)
                return
            stream.sequence += 1
            result = await self.api.card_text(
                stream.card_id, STREAM_ELEMENT, fit(update.text), stream.sequence
            )
            if isinstance(result, Permanent):
                log.info("! feishu reply stream refused", extra={"why": result.reason})
                stream.broken = True

    async def _open_stream(self, stream: _Stream, update: StreamUpdate) -> None:
        assert self.api is not None
        card_id = await self.api.create_card(as_content(stream_card(update.text)))
        if card_id is None:
            stream.broken = True
            return
        reference = json.dumps({"type": "card", "data": {"card_id": card_id}})
        sent = await self.api.send_content(
            chat_id=update.chat_id,
            msg_type="interactive",
            content=reference,
            key=f"stream:{update.run_id}:{card_id}",  # after a restart: a new card, a new message
            reply_to=update.reply_to,
        )
        if not isinstance(sent, Delivered) or not sent.message_id:
            stream.broken = True
            return
        stream.card_id, stream.message_id, stream.sequence = card_id, sent.message_id, 1

    async def _finish_stream(self, delivery: Delivery) -> DeliveryResult | None:
        """The complete reply into its streamed card, and streaming turned off; None when
        the run has no card to finish (it never streamed, or this gateway restarted)."""
        stream = self._streams.get(delivery.run_id or "")
        if stream is None or "#" in delivery.idempotency_key:
            return None  # (a long reply's later parts are posts)
        async with stream.lock:
            stream.finished = True
            if stream.card_id is None or stream.message_id is None or stream.broken:
                return None
            assert self.api is not None
            stream.sequence += 1
            result = await self.api.card_text(
                stream.card_id, STREAM_ELEMENT, fit(delivery.text), stream.sequence
            )
            if not isinstance(result, Delivered):  # (its sequence is never used again)
                if isinstance(result, Permanent):
                    stream.broken = True
                    return None  # say it as a post instead
                stream.finished = False
                return result
            stream.sequence += 1
            settings = json.dumps({"config": {"streaming_mode": False}})
            await self.api.card_settings(stream.card_id, settings, stream.sequence)
            # (kept, finished: an update that comes late opens no second card)
            return Delivered(message_id=stream.message_id)

    # ---- files ---------------------------------------------------------------------

    async def fetch(self, message: InboundMessage, attachment: Attachment, limit: int) -> bytes:
        """An image or file of ``message`` (``im:resource``), at most ``limit`` bytes."""
        kind, _, key = (attachment.key or "").partition(":")
        if self.api is None or kind not in ("image", "file") or not key or not message.message_id:
            raise DeliveryFailed("this attachment cannot be fetched from Feishu")
        return await self.api.download(message.message_id, key, kind, limit)

    async def deliver_file(self, delivery: Delivery, content: bytes) -> DeliveryResult:
        """``delivery.file`` uploaded and sent as an image or file message."""
        if self.api is None:
            return RetryAfter(seconds=1.0, reason="the Feishu channel is still starting")
        file = delivery.file
        if file is None:
            return Permanent(reason="no file to send")
        return await self.api.send_file(
            chat_id=delivery.chat_id,
            name=file.name,
            media_type=file.media_type,
            content=content,
            key=delivery.idempotency_key,
            reply_to=delivery.reply_to,
        )

    async def _send_card(self, delivery: Delivery, content: str) -> DeliveryResult:
        assert self.api is not None
        return await self.api.send_content(
            chat_id=delivery.chat_id,
            msg_type="interactive",
            content=content,
            key=delivery.idempotency_key,
            reply_to=delivery.reply_to,
        )

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.connection is not None:
            await asyncio.to_thread(self.connection.stop)
            self.connection = None
