"""``Outbox``: everything owed to a push channel, recorded, then sent until it lands.

:meth:`Outbox.send` records each message as deliveries in the ledger (long text split at
the channel's limit, on paragraph, then line boundaries, keeping code blocks whole when
it can), under idempotency keys the platform sees, and wakes the worker.
:meth:`Outbox.loop` (supervised) leases due deliveries, each the head of its
conversation's line, and sends them through the channel's ``deliver``: several
conversations at once, one delivery per conversation at a time, in order. A run's
status on a channel that edits is one message: an out-of-date status is dropped, and an
edit comes no sooner than the channel's ``edit_interval`` after the last (timed from
the ledger, so it holds across gateways). The answer
is applied by the :class:`~tether.gateway.retry.RetryPolicy`: delivered, retried later
(the platform's hint, else backoff), or dead-lettered — then said in the conversation
and kept in the ledger (``tether deliveries list``). A gateway that dies mid-send leaves
a lease another gateway (or itself, restarted) takes over: nothing owed is lost, and the
platform can drop a repeat by its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import msgspec

from tether.channels import (
    Attachment,
    Channel,
    Delivered,
    Delivery,
    DeliveryResult,
    FileChannel,
    Permanent,
)
from tether.config import ChannelsConfig
from tether.errors import NotFound
from tether.gateway.phrases import lang_of, say
from tether.gateway.retry import RetryPolicy
from tether.ledger import ConversationRecord, DeliveryRecord, Ledger

__all__ = ["Outbox", "split_text"]

log = logging.getLogger(__name__)

POLL = 5.0
"""Seconds between looks at the ledger when nothing wakes the worker (other gateways)."""
_FENCE = "```"


def _cut(head: str) -> int:
    """Where to end a piece that must fit in ``head``: outside a code block if it can,
    at a paragraph, else a line, else a space; -1 for nowhere good."""
    for sep in ("\n\n", "\n", " "):
        cut = len(head)
        while True:
            cut = head.rfind(sep, 0, cut)
            if cut <= len(head) // 4:
                break
            if head[:cut].count(_FENCE) % 2 == 0:  # not inside a code block
                return cut
        if sep == "\n":
            fallback = head.rfind("\n")
            if fallback > len(head) // 4:
                return fallback
    return -1


def split_text(text: str, max_bytes: int) -> list[str]:
    """Pieces of ``text`` of at most ``max_bytes`` UTF-8 bytes, cut at paragraph breaks,
    else line breaks, else anywhere (never inside a character), outside code blocks when
    possible."""
    if len(text.encode()) <= max_bytes:
        return [text]
    out: list[str] = []
    rest = text
    while rest:
        if len(rest.encode()) <= max_bytes:
            out.append(rest)
            break
        head = rest.encode()[:max_bytes].decode(errors="ignore")
        cut = _cut(head)
        piece = head if cut < 0 else head[:cut]
        out.append(piece)
        rest = rest[len(piece) :].lstrip("\n") if cut >= 0 else rest[len(piece) :]
    return [p for p in out if p]


class Outbox:
    """See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        channels: Mapping[str, Channel],
        config: ChannelsConfig,
        *,
        owner: str,
    ) -> None:
        self.ledger = ledger
        self.channels = dict(channels)
        self.config = config
        self.owner = owner
        self.policy = RetryPolicy(
            max_attempts=config.delivery_attempts,
            base=config.delivery_backoff,
            cap=config.delivery_backoff_max,
        )
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._decoder = msgspec.json.Decoder(Delivery)

    def pushes(self, channel: str) -> bool:
        found = self.channels.get(channel)
        return found is not None and found.capabilities.push

    def shows_status(self, channel: str) -> bool:
        found = self.channels.get(channel)
        return found is not None and found.capabilities.push and found.capabilities.status

    def shows_cards(self, channel: str) -> bool:
        found = self.channels.get(channel)
        return found is not None and found.capabilities.push and found.capabilities.cards

    def edit_interval(self, channel: str) -> float | None:
        """Seconds between edits of one message, for a channel that edits; else None."""
        found = self.channels.get(channel)
        if found is None or not found.capabilities.edit:
            return None
        return found.capabilities.edit_interval

    # ---- producing -----------------------------------------------------------------

    async def send(
        self,
        conversation: ConversationRecord,
        text: str,
        *,
        key: str,
        kind: str = "notice",
        run_id: str | None = None,
        reply_to: str | None = None,
        request: str | None = None,
        choices: list[str] | None = None,
        status_of: str | None = None,
        file: Attachment | None = None,
    ) -> None:
        """Record ``text`` for the conversation (nothing if its channel does not push);
        with ``file``, that file with ``text`` as its caption."""
        channel = self.channels.get(conversation.channel)
        if channel is None or not channel.capabilities.push or not text:
            return
        whole = status_of or file is not None
        pieces = [text] if whole else split_text(text, channel.capabilities.max_message_bytes)
        for i, piece in enumerate(pieces):
            delivery = Delivery(
                channel=conversation.channel,
                conversation=conversation.id,
                chat_id=conversation.chat_id,
                thread=conversation.thread,
                kind=kind,  # type: ignore[arg-type]
                text=piece,
                idempotency_key=key if i == 0 else f"{key}#{i}",
                run_id=run_id,
                reply_to=reply_to,
                request=request,
                choices=list(choices or []),
                file=file,
            )
            await self.ledger.deliveries.enqueue(
                channel=delivery.channel,
                conversation_id=delivery.conversation,
                run_id=run_id,
                kind=kind,
                content=msgspec.json.encode(delivery).decode(),
                idempotency_key=delivery.idempotency_key,
                status_of=status_of,
            )
        self._wake.set()

    # ---- the worker ----------------------------------------------------------------

    async def loop(self) -> None:
        """Lease and send due deliveries until closed (supervised)."""
        limit = self.config.delivery_concurrency
        while not self._closing:
            self._wake.clear()
            free = limit - len(self._inflight)
            if free > 0:
                try:
                    claimed = await self.ledger.deliveries.claim(
                        self.owner, lease=self.config.delivery_lease, limit=free
                    )
                except Exception:
                    log.exception("claiming deliveries failed; retrying")
                    claimed = []
                for record in claimed:
                    task = asyncio.get_running_loop().create_task(
                        self._attempt(record), name=f"delivery:{record.id}"
                    )
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                if len(claimed) == free:
                    continue  # there may be more
            wait = POLL
            with contextlib.suppress(Exception):
                due = await self.ledger.deliveries.next_due()
                if due is not None:
                    wait = min(POLL, max(0.0, due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait + 0.01)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _attempt(self, record: DeliveryRecord) -> None:
        try:
            await self._send(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a delivery attempt failed", extra={"delivery": record.id})
            # the lease runs out and the delivery is tried again

    async def _deliver(self, channel: Channel, delivery: Delivery) -> DeliveryResult:
        """Hand one delivery to its channel: a file's bytes read from its artifact; a
        request's outcome with the message that showed the request (its card)."""
        file = delivery.file
        if file is None:
            if delivery.kind == "notice" and delivery.request and channel.capabilities.cards:
                delivery = await self._with_request_card(delivery)
            return await channel.deliver(delivery)
        if not isinstance(channel, FileChannel) or file.artifact is None:
            return Permanent(reason=f"{delivery.channel} cannot carry files")
        try:
            artifact = await self.ledger.events.get_artifact(file.artifact)
        except NotFound:
            return Permanent(reason=f"the file {file.name!r} is no longer kept")
        return await channel.deliver_file(delivery, artifact.content)

    async def _with_request_card(self, delivery: Delivery) -> Delivery:
        """The outcome with ``edit`` and ``asked`` set from the delivered request of the
        same run and handle (read from the ledger: it holds across restarts)."""
        if delivery.run_id is None or delivery.edit is not None:
            return delivery
        for message_id, content in await self.ledger.deliveries.requests_shown(delivery.run_id):
            shown = self._decoder.decode(content)
            if shown.request == delivery.request and shown.conversation == delivery.conversation:
                return msgspec.structs.replace(delivery, edit=message_id, asked=shown.text)
        return delivery

    async def _send(self, record: DeliveryRecord) -> None:
        ledger = self.ledger
        channel = self.channels.get(record.channel)
        if channel is None:
            await ledger.deliveries.settle(
                record.id, self.owner, state="dead", error=f"no channel {record.channel!r}"
            )
            return
        delivery = self._decoder.decode(record.content)
        if record.status_of is not None and channel.capabilities.edit:
            # one message, edited: only the latest state matters
            if await ledger.deliveries.newer_status(record.status_of, record.id):
                await ledger.deliveries.settle(
                    record.id, self.owner, state="superseded", counts=False
                )
                return
            target = await ledger.deliveries.status_message(record.status_of)
            if target is not None:
                edited, last_sent = target
                now = time.time()  # (a clock behind another gateway's waits no longer)
                due = min(last_sent, now) + channel.capabilities.edit_interval
                if due > now:  # the platform allows one edit of a message per interval
                    await ledger.deliveries.settle(
                        record.id, self.owner, state="pending", retry_at=due, counts=False
                    )
                    return
                delivery = msgspec.structs.replace(delivery, edit=edited)
        result: DeliveryResult = await self._deliver(channel, delivery)
        attempt = record.attempts + 1
        decision = self.policy.decide(attempt, result, time.time())
        message_id = result.message_id if isinstance(result, Delivered) else None
        settled = await ledger.deliveries.settle(
            record.id,
            self.owner,
            state=decision.state,
            platform_message_id=message_id,
            error=decision.error,
            retry_at=decision.retry_at,
        )
        if not settled:
            log.warning(
                "! a delivery's lease was lost while sending", extra={"delivery": record.id}
            )
            return
        if decision.state == "pending":
            log.info(
                "delivery will be retried",
                extra={"delivery": record.id, "attempt": attempt, "why": decision.error},
            )
        elif decision.state == "dead":
            log.warning(
                "! delivery given up",
                extra={
                    "delivery": record.id,
                    "conversation": record.conversation_id,
                    "why": decision.error,
                    "permanent": isinstance(result, Permanent),
                },
            )
            await self._said_dead(record, decision.error or "")

    async def _said_dead(self, record: DeliveryRecord, why: str) -> None:
        """Tell the conversation a message was given up (once; not for such a notice)."""
        if record.idempotency_key.startswith("dead:"):
            return
        try:
            conversation = await self.ledger.conversations.get(record.conversation_id)
        except NotFound:
            return  # a stranger's conversation: nowhere to say it but the log
        lang = lang_of(conversation.lang, self.config.language)
        await self.send(
            conversation,
            say(lang, "delivery_failed", why=why[:300]),
            key=f"dead:{record.id}",
            run_id=record.run_id,
        )

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop claiming; let attempts in flight end (for up to ``grace`` seconds); close
        the channels. What is left is sent by the next gateway to run."""
        self._closing = True
        self._wake.set()
        inflight = list(self._inflight)
        if inflight:
            await asyncio.wait(inflight, timeout=grace)
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in self.channels.values():
            await channel.aclose()
