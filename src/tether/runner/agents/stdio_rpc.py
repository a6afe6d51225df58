"""JSON-RPC over an agent process's stdio: one JSON object per line, both directions.

The agent's requests to us and ours to it have separate id spaces (Codex numbers its own
from 0). Messages need no ``"jsonrpc"`` field (Codex sends none); we send one only when
asked to. Lines longer than :data:`MAX_LINE` end the connection: an agent cannot make
the runner buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tether.errors import ConnectionClosed, RequestTimeout, ToolFailed

__all__ = ["MAX_LINE", "AgentRpcError", "StdioRpc"]

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024 * 1024

OnNotify = Callable[[str, dict[str, Any]], None]
OnRequest = Callable[[str, dict[str, Any]], Awaitable[Any]]


class AgentRpcError(ToolFailed):
    """The agent answered a request with an error (or we answer one of its requests so)."""


class StdioRpc:
    """One agent process's JSON-RPC: :meth:`call`, :meth:`notify`, and callbacks for
    what it sends (``on_notify`` synchronously, ``on_request`` as a task whose result
    or error is the answer)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_notify: OnNotify,
        on_request: OnRequest,
        jsonrpc: bool = False,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.on_notify = on_notify
        self.on_request = on_request
        self.jsonrpc = jsonrpc
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._answering: dict[str, asyncio.Task[None]] = {}
        """The agent's requests we are still answering, by id."""
        self.closed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pump = asyncio.get_running_loop().create_task(self._read(), name="agent:rpc")

    def _send(self, message: dict[str, Any]) -> None:
        if self.closed.is_set():
            raise ConnectionClosed("the agent process is gone")
        if self.jsonrpc:
            message = {"jsonrpc": "2.0", **message}
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def call(self, method: str, params: dict[str, Any], *, timeout: float = 60.0) -> Any:
        """Send a request and return its result; :class:`AgentRpcError` for an error."""
        self._next += 1
        ident = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._send({"id": ident, "method": method, "params": params})
            await self.writer.drain()
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(f"the agent did not answer {method} in {timeout:g} s") from None
        except (ConnectionError, BrokenPipeError):
            raise ConnectionClosed("the agent process is gone") from None
        finally:
            self._pending.pop(ident, None)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    async def _read(self) -> None:
        try:
            while True:
                try:
                    line = await self.reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        self._dispatch(exc.partial)
                    return
                except asyncio.LimitOverrunError:
                    log.warning("! the agent sent a line over the limit; closing it")
                    return
                if len(line) > MAX_LINE:
                    log.warning("! the agent sent a line over the limit; closing it")
                    return
                if line.strip():
                    self._dispatch(line)
        except (ConnectionError, OSError):
            return
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionClosed("the agent process is gone"))

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.info("the agent printed a line that is not JSON", extra={"line": line[:200]})
            return
        if not isinstance(message, dict):
            return
        method = message.get("method")
        ident = message.get("id")
        if isinstance(method, str):
            params = message.get("params")
            params = params if isinstance(params, dict) else {}
            if ident is None:
                try:
                    self.on_notify(method, params)
                except Exception:
                    log.exception("handling an agent notification failed")
            else:
                task = asyncio.get_running_loop().create_task(
                    self._answer(ident, method, params), name=f"agent:request:{method}"
                )
                self._tasks.add(task)
                key = _key(ident)
                self._answering[key] = task
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(functools.partial(self._answered, key))
            return
        if isinstance(ident, int) and ident in self._pending:
            future = self._pending[ident]
            if future.done():
                return
            if "error" in message:
                error = message.get("error") or {}
                text = error.get("message") if isinstance(error, dict) else str(error)
                future.set_exception(AgentRpcError(str(text or "error"), data={"error": error}))
            else:
                future.set_result(message.get("result"))

    def _answered(self, key: str, task: asyncio.Task[None]) -> None:
        if self._answering.get(key) is task:
            del self._answering[key]

    def withdraw(self, ident: Any) -> bool:
        """The agent closed its request ``ident`` itself: stop answering it (no reply is
        sent). False when it is not being answered (answered already, or unknown)."""
        task = self._answering.pop(_key(ident), None)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def _answer(self, ident: Any, method: str, params: dict[str, Any]) -> None:
        try:
            result = await self.on_request(method, params)
        except AgentRpcError as exc:
            reply: dict[str, Any] = {"id": ident, "error": {"code": -32601, "message": exc.message}}
        except Exception as exc:
            log.exception("answering an agent request failed", extra={"method": method})
            reply = {"id": ident, "error": {"code": -32603, "message": str(exc)}}
        else:
            reply = {"id": ident, "result": result}
        with contextlib.suppress(ConnectionClosed, ConnectionError, RuntimeError):
            self._send(reply)
            await self.writer.drain()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        self.closed.set()


def _key(ident: Any) -> str:
    """Request ids as JSON has them (``0`` and ``"0"`` are different ids)."""
    return json.dumps(ident)
