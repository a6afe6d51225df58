"""``Connection``: the asyncio shell around an :class:`~tether.protocol.RpcSession`.

It owns one bounded send queue drained by one writer task, the futures of calls in flight
(their deadlines come from the session's pending table), and the tasks running handlers
for incoming requests. Subclasses (WebSocket, Unix socket) only move bytes:
they implement :meth:`Connection._write` and :meth:`Connection._shutdown_transport`
and call :meth:`Connection.feed` with every frame they receive.

A consumer that cannot keep up (its send queue is full) is closed with reason
``slow_consumer``; it must resync from the ledger when it comes back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from tether.errors import (
    ConnectionClosed,
    InternalError,
    MethodNotFound,
    Overloaded,
    RequestTimeout,
    TetherError,
    TooLarge,
)
from tether.protocol.methods import Method
from tether.protocol.session import (
    ErrorReceived,
    Ignored,
    NotificationReceived,
    PeerError,
    Rejected,
    RequestReceived,
    ResponseReceived,
    RpcSession,
)

__all__ = ["CloseCode", "Connection", "Handler", "RequestObserver", "Router"]

log = logging.getLogger(__name__)

P = Any
R = TypeVar("R")
Handler = Callable[[Any], Any]
"""Takes the typed params; returns the result, or an awaitable of it."""


class Router(Protocol):
    """Finds the handler for an incoming method (already bound to its connection)."""

    def route(self, method: Method[Any, Any]) -> Handler | None: ...


RequestObserver = Callable[[str, float, str], None]
"""Called once per incoming request with (method, seconds, outcome code or ``ok``)."""


class CloseCode:
    """WebSocket close codes tether uses (the Unix socket just closes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN = 1013


class Connection:
    """One JSON-RPC connection, either side. See the module docstring."""

    transport_name = "?"

    def __init__(
        self,
        session: RpcSession[asyncio.Future[Any]],
        *,
        router: Router | None = None,
        send_queue_frames: int = 1024,
        max_inflight: int = 256,
        request_timeout: float = 30.0,
        name: str = "",
    ) -> None:
        self.session = session
        self.router = router
        self.name = name
        self.request_timeout = request_timeout
        self.observer: RequestObserver | None = None
        self.on_close: Callable[[Connection], None] | None = None
        self.close_reason = ""
        self.close_code = 0
        self.last_received = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._send_queue: collections.deque[bytes] = collections.deque()
        self._send_queue_frames = send_queue_frames
        self._max_inflight = max_inflight
        self._wakeup: asyncio.Future[None] | None = None
        self._drained = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight = 0
        """Requests whose handler has not replied yet (a task may linger briefly after)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._close_started = False
        self._peer_error: TetherError | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._writer_task = self._loop.create_task(self._writer(), name=f"{name}:writer")

    # ---- state ---------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self._closing

    @property
    def send_queue_frames(self) -> int:
        """The send-queue bound: a consumer this far behind is closed."""
        return self._send_queue_frames

    @property
    def send_queue_size(self) -> int:
        """Frames queued and not yet written."""
        return len(self._send_queue)

    async def wait_drained(self) -> None:
        """Wait until the send queue has been written out (or the connection closes)."""
        if self._send_queue and not self._closing:
            await self._drained.wait()

    @property
    def inflight(self) -> int:
        """Incoming requests whose handlers are still running."""
        return self._inflight

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # ---- incoming ------------------------------------------------------------------

    def feed(self, data: bytes | str) -> None:
        """Handle one received frame."""
        self.last_received = time.monotonic()
        try:
            event = self.session.receive(data)
        except Exception:  # a bug must not cost the peer its connection
            log.exception("! could not interpret a frame", extra={"conn": self.name})
            self.send_frame(
                self.session.error(None, InternalError("internal error; see the gateway log"))
            )
            return
        if type(event) is RequestReceived:
            self._on_request(event)
        elif type(event) is ResponseReceived:
            waiter = event.call.waiter
            if not waiter.done():
                waiter.set_result(event.result)
        elif type(event) is ErrorReceived:
            waiter = event.call.waiter
            if not waiter.done():
                waiter.set_exception(event.error)
        elif type(event) is NotificationReceived:
            self._on_notification(event)
        elif type(event) is Rejected:
            log.info(
                "! rejected frame",
                extra={"conn": self.name, "method": event.method, "code": event.error.code},
            )
            if event.reply is not None:
                self.send_frame(event.reply)
            if event.method is not None and self.observer is not None:
                self.observer(event.method, 0.0, event.error.code)
        elif type(event) is PeerError:
            self._peer_error = event.error
            log.info(
                "! peer reported an error",
                extra={"conn": self.name, "code": event.error.code, "error": event.error.message},
            )
        elif type(event) is Ignored:
            log.debug("< ignored frame", extra={"conn": self.name, "reason": event.reason})

    def _on_request(self, event: RequestReceived) -> None:
        handler = self.router.route(event.method) if self.router is not None else None
        if handler is None:
            self._reply_error(
                event, MethodNotFound(f"{event.method.name!r} is not served on this connection"), 0
            )
            return
        start = time.perf_counter()
        try:
            outcome = handler(event.params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            self._reply_error(event, exc, start)
            return
        if type(outcome) is types.CoroutineType:
            if self._inflight >= self._max_inflight:
                outcome.close()
                self._reply_error(
                    event,
                    Overloaded(
                        f"more than {self._max_inflight} requests in flight on this connection"
                    ),
                    start,
                )
                return
            self._inflight += 1
            self._spawn(self._finish(event, outcome, start), f"{self.name}:{event.method.name}")
            return
        self._reply(event, outcome, start)

    async def _finish(self, event: RequestReceived, coro: Awaitable[Any], start: float) -> None:
        try:
            result = await coro
        except asyncio.CancelledError:
            self._inflight -= 1
            self._reply_error(event, ConnectionClosed("the gateway is shutting down"), start)
            raise
        except Exception as exc:  # noqa: BLE001
            self._inflight -= 1
            self._reply_error(event, exc, start)
            return
        self._inflight -= 1
        self._reply(event, result, start)

    def _reply(self, event: RequestReceived, result: Any, start: float) -> None:
        frame = self.session.result(event.id, result)
        if len(frame) > self.session.max_frame_bytes:
            # a peer keeps the same limit: it would drop the answer and wait for it
            exc = TooLarge(
                f"the answer to {event.method.name!r} ({len(frame)} bytes) exceeds the frame "
                f"limit of {self.session.max_frame_bytes} bytes; ask for less",
                data={"limit": self.session.max_frame_bytes},
            )
            self._reply_error(event, exc, start)
            return
        self.send_frame(frame)
        if self.observer is not None:
            self.observer(event.method.name, time.perf_counter() - start if start else 0.0, "ok")

    def _reply_error(self, event: RequestReceived, exc: BaseException, start: float) -> None:
        if not isinstance(exc, TetherError):
            log.exception(
                "handler failed",
                exc_info=exc,
                extra={"conn": self.name, "method": event.method.name},
            )
            exc = InternalError("internal error; the gateway log has the details")
        self.send_frame(self.session.error(event.id, exc))
        if self.observer is not None:
            self.observer(
                event.method.name, time.perf_counter() - start if start else 0.0, exc.code
            )

    def _on_notification(self, event: NotificationReceived) -> None:
        handler = self.router.route(event.method) if self.router is not None else None
        if handler is None:
            log.debug(
                "< unhandled notification", extra={"conn": self.name, "method": event.method.name}
            )
            return
        try:
            outcome = handler(event.params)
        except Exception:
            log.exception("notification handler failed", extra={"method": event.method.name})
            return
        if type(outcome) is types.CoroutineType:
            self._spawn(self._run_notification(event.method.name, outcome), f"{self.name}:notify")

    async def _run_notification(self, name: str, coro: Awaitable[Any]) -> None:
        try:
            await coro
        except Exception:
            log.exception("notification handler failed", extra={"method": name})

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = self._loop.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- outgoing ------------------------------------------------------------------

    async def call(self, method: Method[Any, R], params: Any, *, timeout: float | None = None) -> R:
        """Send a request and wait for its typed result (errors are raised as TetherError)."""
        if self._closing:
            raise ConnectionClosed(f"connection closed: {self.close_reason or 'closing'}")
        waiter: asyncio.Future[R] = self._loop.create_future()
        deadline = self._loop.time() + (timeout if timeout is not None else self.request_timeout)
        _call, frame = self.session.request(method, params, deadline=deadline, waiter=waiter)
        self._arm_timer(deadline)
        self.send_frame(frame)
        return await waiter

    def notify(self, method: Method[Any, Any], params: Any) -> None:
        """Send a notification (no reply)."""
        self.send_frame(self.session.notification(method, params))

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame; an overfull send queue closes the connection."""
        if self._closing:
            return
        if len(self._send_queue) >= self._send_queue_frames:
            log.warning(
                "! send queue full; closing slow consumer",
                extra={"conn": self.name, "queued": len(self._send_queue)},
            )
            self._loop.call_soon(self._start_close, CloseCode.TRY_AGAIN, "slow_consumer")
            self._closing = True
            self.close_reason = "slow_consumer"
            return
        self._send_queue.append(frame)
        self._drained.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _writer(self) -> None:
        queue = self._send_queue
        try:
            while True:
                if not queue:
                    if self._closing:
                        return
                    self._wakeup = self._loop.create_future()
                    await self._wakeup
                    continue
                batch = list(queue)
                queue.clear()
                self._drained.clear()
                await self._write(batch)
                if not queue:
                    self._drained.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken transport ends the connection
            log.debug("! write failed", extra={"conn": self.name, "error": repr(exc)})
            self._loop.call_soon(self._start_close, CloseCode.GOING_AWAY, "write_failed")

    # ---- deadlines -----------------------------------------------------------------

    def _arm_timer(self, deadline: float) -> None:
        if self._timer is not None and self._timer_when <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for call in self.session.pending.expire(self._loop.time()):
            if not call.waiter.done():
                call.waiter.set_exception(
                    RequestTimeout(
                        f"no answer to {call.method.name!r} in time",
                        data={"method": call.method.name},
                    )
                )
        nxt = self.session.pending.next_deadline()
        if nxt is not None:
            self._arm_timer(nxt)

    # ---- closing -------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Schedule :meth:`close` (for callbacks that cannot await)."""
        self.close_reason = self.close_reason or reason
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        if self._close_task is None and not self._close_started:
            self._close_task = self._loop.create_task(
                self.close(code, reason), name=f"{self.name}:close"
            )

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for in-flight request handlers to finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close: fail pending calls, flush the send queue, shut the transport. Idempotent."""
        if self._close_started:
            await asyncio.shield(self._closed)
            return
        self._close_started = True
        if not self.close_code:
            self.close_code = code
            self.close_reason = self.close_reason or reason
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = self._peer_error or ConnectionClosed(
            f"connection closed: {self.close_reason or 'closed'}"
        )
        for call in self.session.pending.drain():
            if not call.waiter.done():
                call.waiter.set_exception(error)
        for task in list(self._tasks):
            task.cancel()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        self._drained.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer_task), timeout=1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._writer_task.cancel()
        except Exception:  # noqa: BLE001,S110 - the writer already logged
            pass
        try:
            await self._shutdown_transport(self.close_code, self.close_reason)
        finally:
            if not self._closed.done():
                self._closed.set_result(None)
            if self.on_close is not None:
                self.on_close(self)

    def fail_pending(self, error: TetherError) -> None:
        """Fail the calls in flight with ``error`` when the connection closes (instead of
        ``connection_closed``)."""
        self._peer_error = error

    def transport_lost(self, reason: str) -> None:
        """The peer went away (called by the subclass's reader)."""
        if not self._closing:
            self.close_reason = self.close_reason or reason
        self._start_close(CloseCode.GOING_AWAY, reason)

    # ---- for subclasses ------------------------------------------------------------

    async def _write(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    async def _shutdown_transport(self, code: int, reason: str) -> None:
        raise NotImplementedError
