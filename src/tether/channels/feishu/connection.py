"""Feishu's long connection: the ``lark-oapi`` WebSocket client in a thread of its own.

The SDK's client cannot share the gateway's loop (``../reference`` facts, checked against
lark-oapi 1.7.5): it runs a module-global event loop, ``start()`` blocks forever and has
no stop, and endpoint discovery is a blocking HTTP POST. So :class:`LongConnection` runs
it in a daemon thread with a loop of its own, and stops it from outside.

Frames are handled by a subclass, not by the SDK's dispatcher:

- an ``event`` frame *and* a ``card`` frame (which the stock client drops without an ack)
  are handed, whole (fragments joined), to the gateway's loop. The ack waits until the
  gateway says the event is durable, bounded by ``ack_budget`` (well under Feishu's 3 s).
  A handler that fails or runs out of time acks ``500``, so Feishu delivers the event
  again; the gateway's receipts make the second delivery a no-op.
- each frame is its own task on the client's loop, so a slow event holds up neither the
  pings nor other events.

A watchdog (:meth:`LongConnection.watch`, on the gateway's loop) restarts the thread when
the SDK gave up (a fatal error in a reconnect ends its receive task while ``start()``
still blocks) or when no connection has been up for ``dead_after`` seconds.

``lark_oapi`` is imported only when a connection starts: it takes seconds to import.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

__all__ = ["FrameHandler", "LongConnection"]

log = logging.getLogger(__name__)

FrameHandler = Callable[[dict[str, Any], str], Coroutine[Any, Any, dict[str, Any] | None]]
"""Takes an event's envelope and its frame type (``event`` or ``card``); returns once the
event is durable, with the callback's answer for a card (``{"toast": …}``) or None."""

_REQUIRED = ("type", "message_id", "sum", "seq", "trace_id")


class LongConnection:
    """One app's long connection; :meth:`start` it, :meth:`stop` it, and run
    :meth:`watch` on the gateway's loop while it should be up."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        *,
        domain: str,
        handle: FrameHandler,
        loop: asyncio.AbstractEventLoop,
        ack_budget: float = 2.5,
        dead_after: float = 60.0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.domain = domain
        self.handle = handle
        self.loop = loop
        self.ack_budget = ack_budget
        self.dead_after = dead_after
        self.restarts = 0
        self._client: Any = None
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._down_since: float | None = None

    # ---- state -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the SDK holds an open connection now."""
        return self._client is not None and self._client._conn is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the client's thread (it discovers the endpoint and connects there)."""
        self._stopping = False
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="feishu-long-connection", daemon=True
        )
        self._thread.start()
        ready.wait(30)  # the client exists (connecting goes on in its thread)

    def _main(self, ready: threading.Event) -> None:
        import lark_oapi.ws.client as ws_client  # seconds to import: only when enabled

        from tether.channels.feishu.sdk import quiet

        quiet()  # (its logger writes to stdout)

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_client.loop = loop  # the SDK's client runs on this module-global loop
        logging.getLogger("Lark").setLevel(logging.WARNING)  # its URLs carry tickets
        try:
            client = _client_class()(self, self.app_id, self.app_secret, domain=self.domain)
            self._client, self._ws_loop = client, loop
        finally:
            ready.set()
        try:
            client.start()
        except RuntimeError as exc:
            if not self._stopping:
                log.error("! feishu long connection stopped", extra={"why": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the SDK's failure ends this thread; watch() restarts it
            log.error(
                "! feishu long connection failed", extra={"why": f"{type(exc).__name__}: {exc}"}
            )
        finally:
            _close(loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and end the thread (blocking: call it off the gateway's loop)."""
        self._stopping = True
        client, loop, thread = self._client, self._ws_loop, self._thread
        if client is None or loop is None or thread is None or not thread.is_alive():
            return
        client._auto_reconnect = False
        try:
            asyncio.run_coroutine_threadsafe(client._disconnect(), loop).result(timeout)
        except Exception as exc:  # noqa: BLE001 - already closed, or the loop is gone
            log.debug("feishu disconnect", extra={"why": str(exc)})
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._client = self._ws_loop = None

    async def watch(self, interval: float = 1.0) -> None:
        """Restart the client when its thread died or it has been down too long."""
        while not self._stopping:
            await asyncio.sleep(interval)
            if self._stopping:
                return
            now = time.monotonic()
            if self.connected:
                self._down_since = None
                continue
            if self._down_since is None:
                self._down_since = now
            if self.alive and now - self._down_since < self.dead_after:
                continue
            log.warning(
                "! feishu long connection is down: restarting it",
                extra={"thread_alive": self.alive, "down_for": round(now - self._down_since, 1)},
            )
            await asyncio.to_thread(self.stop)
            self._down_since = None
            self.restarts += 1
            await asyncio.to_thread(self.start)

    # ---- frames ----------------------------------------------------------------------

    async def answer(self, payload: bytes, kind: str) -> dict[str, Any] | None:
        """On the client's loop: hand one whole frame to the gateway's loop and wait,
        within the ack budget, for it to be durable."""
        envelope = json.loads(payload)
        if not isinstance(envelope, dict):
            raise ValueError("the frame's payload is not a JSON object")
        handed: Future[dict[str, Any] | None] = asyncio.run_coroutine_threadsafe(
            self.handle(envelope, kind), self.loop
        )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(handed), self.ack_budget)
        except TimeoutError:
            handed.cancel()
            raise


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the SDK left running on its loop (its ping loop, its cache's timer),
    let it end, and close the loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _client_class() -> Any:
    """The SDK's client, with data frames handled by :meth:`LongConnection.answer`."""
    import lark_oapi.ws.client as ws_client

    class Client(ws_client.Client):  # type: ignore[misc]
        def __init__(self, owner: LongConnection, app_id: str, secret: str, *, domain: str):
            from lark_oapi.core.enum import LogLevel

            # WARNING: its INFO lines carry the connection URL and its ticket
            super().__init__(
                app_id, secret, log_level=LogLevel.WARNING, domain=domain, auto_reconnect=True
            )
            self._owner = owner

        async def _handle_data_frame(self, frame: Any) -> None:
            headers = {h.key: h.value for h in frame.headers}
            if any(key not in headers for key in _REQUIRED):
                log.warning(
                    "! feishu frame without its headers: dropped", extra={"headers": headers}
                )
                return
            payload = frame.payload
            total, index = int(headers["sum"]), int(headers["seq"])
            if total > 1:
                payload = self._combine(headers["message_id"], total, index, payload)
                if payload is None:  # more fragments to come
                    return
            kind = headers["type"]
            if kind not in ("event", "card"):
                return
            started = time.monotonic()
            answer: dict[str, Any] = {"code": 200}
            try:
                data = await self._owner.answer(payload, kind)
                if data is not None:
                    answer["data"] = base64.b64encode(json.dumps(data).encode()).decode()
            except Exception as exc:  # noqa: BLE001 - any failure is a 500: Feishu redelivers
                log.warning(
                    "! feishu event not taken: Feishu will deliver it again",
                    extra={"kind": kind, "why": f"{type(exc).__name__}: {exc}"},
                )
                answer = {"code": 500}
            rt = frame.headers.add()
            rt.key, rt.value = "biz_rt", str(int((time.monotonic() - started) * 1000))
            frame.payload = json.dumps(answer).encode()
            await self._write_message(frame.SerializeToString())

    return Client
