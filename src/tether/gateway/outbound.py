"""``Outbound``: sends messages to push channels, in order per conversation.

Each message becomes one or more deliveries (long text is split at the channel's limit,
on paragraph, then line boundaries), each recorded in the ledger under its idempotency
key before it is sent, and settled with the platform's answer. A key recorded before is
not sent again. Every conversation has its own queue and worker, so one conversation's
slow or failing endpoint never delays another's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Mapping

from tether.channels import Channel, Delivered, Delivery, Permanent
from tether.ledger import ConversationRecord, Ledger

__all__ = ["Outbound", "split_text"]

log = logging.getLogger(__name__)


def split_text(text: str, max_bytes: int) -> list[str]:
    """Pieces of ``text`` of at most ``max_bytes`` UTF-8 bytes, cut at paragraph breaks,
    else line breaks, else anywhere (never inside a character)."""
    if len(text.encode()) <= max_bytes:
        return [text]
    out: list[str] = []
    rest = text
    while rest:
        if len(rest.encode()) <= max_bytes:
            out.append(rest)
            break
        head = rest.encode()[:max_bytes].decode(errors="ignore")
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = head.rfind(sep)
            if cut > len(head) // 4:
                break
            cut = -1
        piece = head if cut < 0 else head[:cut]
        out.append(piece)
        rest = rest[len(piece) :].lstrip("\n") if cut >= 0 else rest[len(piece) :]
    return [p for p in out if p]


class Outbound:
    """See the module docstring."""

    def __init__(self, ledger: Ledger, channels: Mapping[str, Channel]) -> None:
        self.ledger = ledger
        self.channels = dict(channels)
        self._queues: dict[str, collections.deque[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def pushes(self, channel: str) -> bool:
        found = self.channels.get(channel)
        return found is not None and found.capabilities.push

    def send(
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
    ) -> None:
        """Queue ``text`` for the conversation (nothing if its channel does not push)."""
        channel = self.channels.get(conversation.channel)
        if channel is None or not channel.capabilities.push or not text:
            return
        pieces = split_text(text, channel.capabilities.max_message_bytes)
        queue = self._queues.setdefault(conversation.id, collections.deque())
        for i, piece in enumerate(pieces):
            queue.append(
                Delivery(
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
                )
            )
        self.idle.clear()
        if conversation.id not in self._workers:
            self._workers[conversation.id] = asyncio.get_running_loop().create_task(
                self._work(conversation.id), name=f"outbound:{conversation.id}"
            )

    async def _work(self, conversation_id: str) -> None:
        queue = self._queues[conversation_id]
        try:
            while queue:
                delivery = queue.popleft()
                try:
                    await self._deliver(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery failed", extra={"conversation": conversation_id})
        finally:
            self._queues.pop(conversation_id, None)
            self._workers.pop(conversation_id, None)
            if not self._workers:
                self.idle.set()

    async def _deliver(self, delivery: Delivery) -> None:
        channel = self.channels[delivery.channel]
        record = await self.ledger.deliveries.record(
            channel=delivery.channel,
            conversation_id=delivery.conversation,
            run_id=delivery.run_id,
            kind=delivery.kind,
            content=delivery.text,
            idempotency_key=delivery.idempotency_key,
        )
        if record is None:
            return  # recorded (and sent) before
        result = await channel.deliver(delivery)
        if isinstance(result, Delivered):
            await self.ledger.deliveries.settle(
                record.id, state="delivered", platform_message_id=result.message_id
            )
            return
        reason = result.reason
        if not isinstance(result, Permanent):
            reason = f"{reason} (retry after {result.seconds:g} s: retries come with the outbox)"
        log.warning(
            "! delivery failed",
            extra={"delivery": record.id, "conversation": delivery.conversation, "why": reason},
        )
        await self.ledger.deliveries.settle(record.id, state="failed", error=reason)

    async def aclose(self, grace: float = 5.0) -> None:
        """Let queued deliveries go out (for up to ``grace`` seconds), then stop."""
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=grace)
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in self.channels.values():
            await channel.aclose()
