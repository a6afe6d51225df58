"""Event fan-out: committed events go to every subscriber of their run or session.

:class:`Fanout` hands each committed event to every :class:`Subscriber` of its run or
session. The subscriber the rest of the gateway uses is :class:`Subscription`: one
stream, backlog first, then live, for any :class:`Sink` — a client connection
(:class:`ConnectionSink`, ``run.subscribe``), and next a channel's renderer or the
outbox worker.

A subscription is registered with the fan-out *before* it reads its backlog from the
ledger, buffers live events meanwhile, and skips anything at or below what it already
delivered (a per-run seq cursor). Because events are published only after they are
committed, every subscriber gets every event once, in seq order per run, with no gap.

The backlog is paced by the sink (:meth:`Sink.room`). Each subscription's buffer is
bounded, and a sink that cannot keep up live (:meth:`Sink.send` returns False) is told
to resync with its cursor and the subscription ends: the consumer subscribes again from
there, reading the missed part from the ledger, instead of the gateway holding unbounded
memory. For a connection, a send queue three-quarters full is falling behind, and the
backlog waits until it is half empty.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from tether.ledger import Event, Ledger
from tether.protocol.methods import RUN_EVENT, RUN_RESYNC
from tether.protocol.runs import EventInfo, RunEventNote, RunResyncNote
from tether.types import new_id

if TYPE_CHECKING:
    from tether.transport.connection import Connection

__all__ = ["ConnectionSink", "Fanout", "Resync", "Sink", "Subscriber", "Subscription", "event_info"]

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


class Subscriber(Protocol):
    """Anything the fan-out hands committed events to."""

    run_id: str | None
    session_id: str | None

    def offer(self, session_id: str, event: Event) -> None:
        """Take one committed event of the run or session subscribed to (never blocks)."""
        ...


class Fanout:
    """In-process routing of committed events to subscribers by run and by session."""

    def __init__(self) -> None:
        self._by_run: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._by_session: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._all: list[Subscriber] = []
        self.published = 0

    def add_all(self, sub: Subscriber) -> None:
        """Hand ``sub`` every committed event (the channel relay)."""
        self._all.append(sub)

    def add(self, sub: Subscriber) -> None:
        if sub.run_id is not None:
            self._by_run[sub.run_id].add(sub)
        else:
            assert sub.session_id is not None
            self._by_session[sub.session_id].add(sub)

    def remove(self, sub: Subscriber) -> None:
        for table, key in ((self._by_run, sub.run_id), (self._by_session, sub.session_id)):
            if key is not None and key in table:
                table[key].discard(sub)
                if not table[key]:
                    del table[key]

    def publish(self, session_id: str, event: Event) -> None:
        """Hand a committed event to its subscribers (never blocks)."""
        self.published += 1
        for sub in self._all:
            sub.offer(session_id, event)
        for table, key in ((self._by_run, event.run_id), (self._by_session, session_id)):
            subs = table.get(key)
            if subs:
                for sub in list(subs):
                    sub.offer(session_id, event)


class Resync(msgspec.Struct, frozen=True, kw_only=True):
    """What a subscriber that fell behind needs to subscribe again without a gap."""

    subscription: str
    run_id: str | None
    session_id: str | None
    after: dict[str, int]
    since_run: str | None
    reason: str


class Sink(Protocol):
    """Where a :class:`Subscription` delivers its events."""

    @property
    def closing(self) -> bool:
        """True once the consumer is gone (the subscription then ends)."""
        ...

    def send(self, subscription: str, session_id: str, event: Event) -> bool:
        """Deliver one event now; False if the consumer cannot keep up (it must resync)."""
        ...

    async def room(self) -> None:
        """Wait, while sending the backlog, until the consumer can take more."""
        ...

    def resync(self, note: Resync) -> None:
        """Tell the consumer it fell behind and from where to subscribe again."""
        ...


class ConnectionSink:
    """A client connection: ``run.event`` and ``run.resync`` notifications."""

    def __init__(self, conn: Connection, queue_limit: int) -> None:
        self.conn = conn
        self.queue_limit = queue_limit

    @property
    def closing(self) -> bool:
        return self.conn.is_closing

    def send(self, subscription: str, session_id: str, event: Event) -> bool:
        if self.conn.send_queue_size >= self.queue_limit:
            return False
        self.conn.notify(
            RUN_EVENT,
            RunEventNote(subscription=subscription, session_id=session_id, event=event_info(event)),
        )
        return True

    async def room(self) -> None:
        if self.conn.send_queue_size < self.queue_limit:
            return
        while self.conn.send_queue_size > self.queue_limit // 2 and not self.conn.is_closing:
            await self.conn.wait_drained()

    def resync(self, note: Resync) -> None:
        if self.conn.is_closing:
            return
        self.conn.notify(
            RUN_RESYNC,
            RunResyncNote(
                subscription=note.subscription,
                run_id=note.run_id,
                session_id=note.session_id,
                after_seq=note.after.get(note.run_id, 0) if note.run_id else 0,
                after=dict(note.after),
                since_run=note.since_run,
                reason=note.reason,
            ),
        )


class Subscription:
    """One subscriber's stream of a run or a session. See the module docstring.

    For a run, the backlog is its events after ``after[run_id]``. For a session it is
    every run of the session, oldest first, from ``since_run`` on (all of them without
    it), each from ``after.get(run_id, 0)``; then new runs of the session as they start.
    The stream does not end with a run: after a terminal event nothing more comes for
    that run."""

    def __init__(
        self,
        sink: Sink,
        fanout: Fanout,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        after: dict[str, int] | None = None,
        since_run: str | None = None,
        max_buffer: int = 1000,
        on_end: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.id = new_id("sub")
        self.sink = sink
        self.fanout = fanout
        self.run_id = run_id
        self.session_id = session_id
        self.sent: dict[str, int] = dict(after or {})
        self.since_run = since_run
        self.max_buffer = max_buffer
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
            await self.sink.room()
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
                await self.sink.room()
                self._send(sid, event)
                if self.closed:
                    return
            if len(page) < BACKLOG_PAGE:
                return

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
        if self.sink.closing:
            self.close()
            return
        if not self.sink.send(self.id, session_id, event):
            self._resync("slow_consumer")
            return
        self.sent[event.run_id] = event.seq

    def _resync(self, reason: str) -> None:
        log.info("! subscriber must resync", extra={"subscription": self.id, "reason": reason})
        since = self.since_run
        if self.session_id is not None and self.sent:
            since = min(self.sent)
        self.sink.resync(
            Resync(
                subscription=self.id,
                run_id=self.run_id,
                session_id=self.session_id,
                after=dict(self.sent),
                since_run=since,
                reason=reason,
            )
        )
        self.close()
