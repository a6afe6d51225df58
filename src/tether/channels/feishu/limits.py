"""Feishu's send limits, kept by pacing rather than by luck: at most 5 messages a second
to one chat (shared by every bot in a group) and 50 a second per app. Each send reserves
its slot in both, per chat and for the app, and waits until the later of the two comes.

The documented limits are 5/s per chat and 50/s (and 1,000/min) per app; tether stays
under them (``per_chat``, ``per_app``), since other bots share a group's budget.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

__all__ = ["SendPacer"]


class _Slots:
    """Reserves evenly spaced slots: ``rate`` a second, ``burst`` at once at most."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = 1.0 / rate
        self.tolerance = self.interval * (max(1, burst) - 1)
        self.tat = 0.0  # the theoretical arrival time of the next send

    def reserve(self, now: float) -> float:
        """Take the next slot: seconds from ``now`` until it comes."""
        start = max(self.tat, now)
        wait = max(0.0, start - self.tolerance - now)
        self.tat = start + self.interval
        return wait


class SendPacer:
    """How long each send must wait to stay within both limits."""

    def __init__(
        self,
        *,
        per_chat: float = 4.0,
        per_app: float = 40.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        max_chats: int = 10_000,
    ) -> None:
        self.per_chat, self.burst, self.clock, self.max_chats = per_chat, burst, clock, max_chats
        self.app = _Slots(per_app, burst=int(per_app // 4) or 1)
        self.chats: collections.OrderedDict[str, _Slots] = collections.OrderedDict()

    def delay(self, chat_id: str) -> float:
        """Reserve a send to ``chat_id``; the seconds to wait before making it."""
        now = self.clock()
        chat = self.chats.pop(chat_id, None) or _Slots(self.per_chat, self.burst)
        self.chats[chat_id] = chat  # most recently used last
        while len(self.chats) > self.max_chats:
            self.chats.popitem(last=False)
        # the chat's slot first, then the app's slot at or after it
        chat_wait = chat.reserve(now)
        app_wait = self.app.reserve(now + chat_wait)
        return chat_wait + app_wait

    async def wait(self, chat_id: str) -> None:
        pause = self.delay(chat_id)
        if pause > 0:
            await asyncio.sleep(pause)
