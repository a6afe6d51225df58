"""Event fan-out: committed events go to every subscriber of their run or session.

A :class:`Subscription` is registered with the :class:`Fanout` *before* it reads its
backlog from the ledger, buffers live events meanwhile, and skips anything at or
below what it already sent (a per-run seq cursor). Because events are published only
after they are committed, this gives every subscriber every event once, in seq order
per run, with no gap.

The backlog is paced by the connection: when its send queue reaches the limit, sending waits
until it is half empty, so a long history reaches a slow reader without tripping the
connection's send-queue bound. Each subscription's buffer is bounded, and live sending
stops when the connection's send queue is three-quarters full: the subscriber is then sent
``run.resync`` with its cursor and the subscription ends. The client subscribes again
from there, reading the missed part from the ledger, instead of the gateway holding
unbounded memory.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from tether.ledger import Event, Ledger
from tether.protocol.methods import RUN_EVENT, RUN_RESYNC
from tether.protocol.runs import EventInfo, RunEventNote, RunResyncNote
from tether.types import RunState, new_id

if TYPE_CHECKING:
    from tether.transport.connection import Connection

__all__ = ["Fanout", "Subscription", "event_info"]

log = logging.getLogger(__name__)

BACKLOG_PAGE = 500


def event_info(event: Event) -> EventInfo:
    return EventInfo(
        run_id=event.run_id,
        seq=event.seq,
        kind=event.kind,
        source=event.source,
        created_at=event.created_at,
        payload=msgspec.Raw(event.payload.encode()),
    )


class Fanout:
    """In-process routing of committed events to subscriptions by run and by session."""

    def __init__(self) -> None:
        self._by_run: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._by_session: dict[str, set[Subscription]] = collections.defaultdict(set)
        self.published = 0

    def add(self, sub: Subscription) -> None:
        if sub.run_id is not None:
            self._by_run[sub.run_id].add(sub)
        else:
            assert sub.session_id is not None
            self._by_session[sub.session_id].add(sub)

    def remove(self, sub: Subscription) -> None:
        for table, key in ((self._by_run, sub.run_id), (self._by_session, sub.session_id)):
            if key is not None and key in table:
                table[key].discard(sub)
                if not table[key]:
                    del table[key]

    def publish(self, session_id: str, event: Event) -> None:
        """Hand a committed event to its subscribers (never blocks)."""
        self.published += 1
        for table, key in ((self._by_run, event.run_id), (self._by_session, session_id)):
            subs = table.get(key)
            if subs:
                for sub in list(subs):
                    sub.offer(session_id, event)


class Subscription:
    """One subscriber's stream of a run or a session. See the module docstring."""

    def __init__(
        self,
        conn: Connection,
        fanout: Fanout,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        after: dict[str, int] | None = None,
        since_run: str | None = None,
        max_buffer: int = 1000,
        queue_limit: int = 768,
        on_end: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.id = new_id("sub")
        self.conn = conn
        self.fanout = fanout
        self.run_id = run_id
        self.session_id = session_id
        self.sent: dict[str, int] = dict(after or {})
        self.since_run = since_run
        self.max_buffer = max_buffer
        self.queue_limit = queue_limit
        self.on_end = on_end
        self.live = False
        self.closed = False
        self._buffer: collections.deque[tuple[str, Event]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle -----------------------------------------------------------------

    def start(self, ledger: Ledger) -> None:
        """Register for live events, then send the backlog (in a task owned by this object)."""
        self.fanout.add(self)
        self._task = asyncio.get_running_loop().create_task(
            self._backlog(ledger), name=f"sub:{self.id}"
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.fanout.remove(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.on_end is not None:
            self.on_end(self)

    async def _backlog(self, ledger: Ledger) -> None:
        try:
            if self.run_id is not None:
                await self._run_backlog(ledger, self.run_id, session_id=None)
            else:
                assert self.session_id is not None
                runs, _ = await ledger.runs.list(session_id=self.session_id, limit=1000)
                for run in sorted(runs, key=lambda r: r.id):
                    if self.since_run is None and run.state not in (
                        RunState.QUEUED,
                        RunState.RUNNING,
                        RunState.WAITING,
                    ):
                        continue
                    if self.since_run is not None and run.id < self.since_run:
                        continue
                    await self._run_backlog(ledger, run.id, session_id=self.session_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription backlog failed", extra={"subscription": self.id})
            self._resync("backlog_failed")
            return
        while self._buffer and not self.closed:
            await self._room()
            session_id, event = self._buffer.popleft()
            self._send(session_id, event)
        self.live = True

    async def _run_backlog(self, ledger: Ledger, run_id: str, session_id: str | None) -> None:
        sid = session_id
        if sid is None:
            sid = (await ledger.runs.get(run_id)).session_id
        while not self.closed:
            page = await ledger.events.read(
                run_id, after_seq=self.sent.get(run_id, 0), limit=BACKLOG_PAGE
            )
            for event in page:
                await self._room()
                self._send(sid, event)
                if self.closed:
                    return
            if len(page) < BACKLOG_PAGE:
                return

    async def _room(self) -> None:
        """Before sending backlog: if the send queue is at the limit, wait until it is half
        empty (the backlog is paced by the reader; live events meanwhile are buffered)."""
        if self.conn.send_queue_size < self.queue_limit:
            return
        while self.conn.send_queue_size > self.queue_limit // 2 and not self.conn.is_closing:
            await self.conn.wait_drained()

    # ---- delivery ------------------------------------------------------------------

    def offer(self, session_id: str, event: Event) -> None:
        if self.closed:
            return
        if not self.live:
            if len(self._buffer) >= self.max_buffer:
                self._resync("buffer_full")
                return
            self._buffer.append((session_id, event))
            return
        self._send(session_id, event)

    def _send(self, session_id: str, event: Event) -> None:
        if event.seq <= self.sent.get(event.run_id, 0):
            return  # already sent (from the backlog or the buffer)
        if self.live and self.conn.send_queue_size >= self.queue_limit:
            self._resync("slow_consumer")
            return
        if self.conn.is_closing:
            self.close()
            return
        self.sent[event.run_id] = event.seq
        self.conn.notify(
            RUN_EVENT,
            RunEventNote(subscription=self.id, session_id=session_id, event=event_info(event)),
        )

    def _resync(self, reason: str) -> None:
        log.info("! subscriber must resync", extra={"subscription": self.id, "reason": reason})
        if not self.conn.is_closing:
            since = self.since_run
            if self.session_id is not None and self.sent:
                since = min(self.sent)
            self.conn.notify(
                RUN_RESYNC,
                RunResyncNote(
                    subscription=self.id,
                    run_id=self.run_id,
                    session_id=self.session_id,
                    after_seq=self.sent.get(self.run_id, 0) if self.run_id else 0,
                    after=dict(self.sent),
                    since_run=since,
                    reason=reason,
                ),
            )
        self.close()
