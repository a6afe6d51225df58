"""Feishu's send limits, kept by pacing rather than by luck: at most 5 messages a second
to one chat (shared by every bot in a group) and 50 a second per app. Each send reserves
its slot in both, per chat and for the app, and waits until the later of the two comes.

The documented limits are 5/s per chat and 50/s (and 1,000/min) per app; tether stays
under them (``per_chat``, ``per_app``), since other bots share a group's budget.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable

__all__ = ["SendPacer", "Window"]


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
        # a small burst: with 40 a second, 4 at once keeps any one second under 45 sends,
        # so a thread that starts its call late does not push the app past Feishu's 50
        self.app = _Slots(per_app, burst=4)
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


class Window:
    """At most ``limit`` calls started in any ``span`` seconds, kept where each call is
    really made: in the worker thread, just before its request goes out. The pacer spaces
    sends on the event loop, but a send that waited for a free thread starts late, and
    late sends could start together."""

    def __init__(
        self,
        limit: int,
        span: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit, self.span, self.clock, self.sleep = limit, span, clock, sleep
        self._started: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def enter(self) -> None:
        """Block (this thread) until a call may start, then count it as started."""
        while True:
            with self._lock:
                now = self.clock()
                while self._started and now - self._started[0] >= self.span:
                    self._started.popleft()
                if len(self._started) < self.limit:
                    self._started.append(now)
                    return
                pause = self.span - (now - self._started[0])
            self.sleep(max(pause, 0.001))
