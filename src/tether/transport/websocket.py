"""JSON-RPC over a WebSocket: one JSON message per text frame.

Works with both aiohttp's server-side ``WebSocketResponse`` and client-side
``ClientWebSocketResponse``. Frames are read as bytes (``decode_text=False``) so msgspec
decodes them without an extra UTF-8 copy. Binary frames are refused.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web

from tether.errors import InvalidRequest, TooLarge
from tether.protocol.frame import encode_error
from tether.transport.connection import Connection

__all__ = ["WebSocketConnection"]

log = logging.getLogger(__name__)


class WebSocketConnection(Connection):
    """A :class:`Connection` over an aiohttp WebSocket (server or client side)."""

    transport_name = "ws"

    def __init__(
        self,
        ws: web.WebSocketResponse[Any] | aiohttp.ClientWebSocketResponse[Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.ws = ws
        super().__init__(*args, **kwargs)

    async def _write(self, frames: list[bytes]) -> None:
        send = self.ws.send_frame
        for frame in frames:
            await send(frame, aiohttp.WSMsgType.TEXT)

    async def _shutdown_transport(self, code: int, reason: str) -> None:
        if not self.ws.closed:
            try:
                await self.ws.close(code=code, message=reason.encode()[:120])
            except (ConnectionError, RuntimeError) as exc:
                log.debug("close failed", extra={"conn": self.name, "error": repr(exc)})

    async def run(self) -> None:
        """Read frames until the socket closes, then finish closing."""
        try:
            async for msg in self.ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.feed(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self.send_frame(
                        encode_error(
                            None, InvalidRequest("binary frames are not accepted; send text")
                        )
                    )
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    error = self.ws.exception()
                    log.debug("ws error", extra={"conn": self.name, "error": repr(error)})
                    if (
                        isinstance(error, aiohttp.WebSocketError)
                        and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
                    ):
                        # calls in flight fail as too_large, not as a dropped connection
                        # (which a caller would retry, only to be sent the same frame)
                        self.fail_pending(
                            TooLarge(f"the peer sent a frame over the limit: {error}")
                        )
                    break
        except (ConnectionError, RuntimeError) as exc:
            log.debug("ws read failed", extra={"conn": self.name, "error": repr(exc)})
        if not self.is_closing:
            code = self.ws.close_code
            self.transport_lost(f"peer closed ({code})" if code else "peer closed")
        await self.wait_closed()
