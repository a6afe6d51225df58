"""Baseline servers measured in the same run as tether: a raw aiohttp WebSocket echo and a
raw asyncio-Protocol Unix-socket line echo. Both on uvloop, like the gateway.

    python bench/baselines.py ws    -> prints the port, echoes every text frame
    python bench/baselines.py ipc P -> listens on the Unix socket P, echoes every line
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import WSMsgType, web


async def ws_echo() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, decode_text=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_frame(msg.data, WSMsgType.TEXT)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


class LineEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" in self.buf:
            *lines, self.buf = self.buf.split(b"\n")
            self.transport.write(b"\n".join(lines) + b"\n")  # type: ignore[attr-defined]


async def ipc_echo(path: str) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_unix_server(LineEcho, path)
    print(path, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(ws_echo() if sys.argv[1] == "ws" else ipc_echo(sys.argv[2]))
