"""``ReplyStreams``: a run's reply shown while it is written, on channels that stream.

The relay hands every ``agent.delta`` of a run in a conversation on such a channel to
:meth:`ReplyStreams.follow`. The text so far goes to the channel at most once per
``interval``, one update in flight per run (a slow platform coalesces, it never queues).
Updates are best effort and not stored: the complete reply is still the run's durable
delivery, so a restart mid-stream ends with the full reply exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tether.channels import Channel, StreamingChannel, StreamUpdate
from tether.ledger import ConversationRecord

__all__ = ["ReplyStreams"]

log = logging.getLogger(__name__)

_MAX_TEXT = 200_000
_RUNS_KEPT = 1_000


@dataclass
class _Stream:
    conversation: ConversationRecord
    reply_to: str | None
    text: str = ""
    sent: int = 0
    last: float = 0.0
    ended: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ReplyStreams:
    """One per gateway, fed by the relay."""

    def __init__(self, channels: Mapping[str, Channel], *, interval: float = 0.3) -> None:
        self.channels = channels
        self.interval = interval
        self._runs: dict[str, _Stream] = {}

    def wants(self, channel: str) -> bool:
        found = self.channels.get(channel)
        return (
            found is not None
            and found.capabilities.streaming
            and isinstance(found, StreamingChannel)
        )

    def follow(
        self, conversation: ConversationRecord, run_id: str, text: str, reply_to: str | None
    ) -> None:
        """One more piece of the reply of ``run_id``."""
        stream = self._runs.get(run_id)
        if stream is None:
            if len(self._runs) >= _RUNS_KEPT:
                return  # (so many at once: they end with their reply all the same)
            stream = self._runs[run_id] = _Stream(conversation, reply_to)
        if len(stream.text) < _MAX_TEXT:
            stream.text = (stream.text + text)[:_MAX_TEXT]
        if stream.task is None or stream.task.done():
            stream.task = asyncio.get_running_loop().create_task(
                self._pump(run_id, stream), name=f"stream:{run_id}"
            )

    def end(self, run_id: str) -> None:
        """The run ended: its reply is a delivery now."""
        stream = self._runs.pop(run_id, None)
        if stream is not None:
            stream.ended = True

    async def _pump(self, run_id: str, stream: _Stream) -> None:
        channel = self.channels.get(stream.conversation.channel)
        if not isinstance(channel, StreamingChannel):
            return
        while not stream.ended and stream.sent < len(stream.text):
            wait = stream.last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            text, stream.sent, stream.last = stream.text, len(stream.text), time.monotonic()
            conversation = stream.conversation
            update = StreamUpdate(
                channel=conversation.channel,
                conversation=conversation.id,
                chat_id=conversation.chat_id,
                thread=conversation.thread,
                run_id=run_id,
                text=text,
                reply_to=stream.reply_to,
            )
            try:
                await channel.stream(update)
            except Exception:  # best effort: the reply is delivered all the same
                log.exception("a reply stream update failed", extra={"run_id": run_id})

    async def aclose(self) -> None:
        tasks = [s.task for s in self._runs.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()
