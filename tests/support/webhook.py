"""A stand-in for a system wired to tether's webhook channel: it signs the messages it
sends, and serves the URL tether POSTs replies to (checking their signatures)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.process import SCALE
from tether.channels.webhook.events import sign, verify

SECRET = "s3cret-" + "x" * 40
SECRET_ENV = "TETHER_TEST_WEBHOOK_SECRET"


class WebhookStandIn:
    """Collects what tether delivers; answers with the statuses it is told to."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret.encode()
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.refused = 0
        self.answers: list[tuple[int, dict[str, str]]] = []
        """Statuses (and headers) to answer with, in turn; then 200."""
        self.failing: dict[str, int] = {}
        """Chat id -> the status every delivery to it gets."""
        self.stall: float = 0.0
        """Seconds to sit on each delivery, then fail it (503): a platform that hangs."""
        self.attempts: list[tuple[float, str, int]] = []
        """Every delivery that arrived signed: (time, its key, the status answered)."""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._n = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, request.headers, body, now=time.time(), window=300)
        except Exception:
            self.refused += 1
            return web.Response(status=401)
        data = json.loads(body)
        key = request.headers.get("Idempotency-Key", "")
        if self.stall:
            await asyncio.sleep(self.stall)
            self.attempts.append((time.monotonic(), key, 503))
            return web.Response(status=503)
        status, headers = 200, {}
        if data["chat"]["id"] in self.failing:
            status = self.failing[data["chat"]["id"]]
        elif self.answers:
            status, headers = self.answers.pop(0)
        self.attempts.append((time.monotonic(), key, status))
        self._changed.set()
        if status != 200:
            return web.Response(status=status, headers=headers)
        self._n += 1
        self.received.append(data)
        self.headers.append(dict(request.headers))
        self._changed.set()
        return web.json_response({"message_id": f"m{self._n}"})

    def texts(self, chat: str | None = None) -> list[str]:
        return [d["text"] for d in self.received if chat is None or d["chat"]["id"] == chat]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first delivery that matches (waiting for it, bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout * SCALE
        while True:
            for d in self.received:
                if predicate(d):
                    return d
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no matching delivery; got {self.texts()}"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


@pytest.fixture
async def hook() -> AsyncIterator[WebhookStandIn]:
    """A running stand-in (use with ``from tests.support.webhook import hook``)."""
    stand_in = WebhookStandIn()
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.aclose()


def config_toml(
    path: Path,
    url: str,
    *,
    extra: str = "",
    defaults: str = "",
    agent: str = "operator",
    channel: str = "",
) -> None:
    """A gateway config with the ``ops`` webhook channel (``channel``: more of its keys)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(
        f"""
[channels.webhook.ops]
secret_env = "{SECRET_ENV}"
url = "{url}"
{channel}

[channels.webhook.ops.defaults]
agent = "{agent}"
runner = "box"
workspace = "app"
{defaults}
{extra}
"""
    )


def event(
    event_id: str,
    text: str,
    *,
    sender: str = "u-alice",
    chat: str = "c1",
    group: bool = False,
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "chat": {"id": chat, "type": "group" if group else "p2p"},
        "sender": {"id": sender, "name": sender},
        "text": text,
        "message_id": f"msg-{event_id}",
    }
    body.update(more)
    return body


async def post(
    base_url: str,
    body: dict[str, Any] | bytes,
    *,
    name: str = "ops",
    secret: str = SECRET,
    timestamp: float | None = None,
    headers: dict[str, str] | None = None,
    signed: bool = True,
) -> tuple[int, dict[str, Any]]:
    """POST a (signed) message to the gateway's webhook; (status, JSON answer)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"}
    if signed:
        sent.update(sign(secret.encode(), raw, time.time() if timestamp is None else timestamp))
    sent.update(headers or {})
    url = f"{base_url}/channels/webhook/{name}"
    async with aiohttp.ClientSession() as http, http.post(url, data=raw, headers=sent) as resp:
        try:
            answer = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            answer = {}
        return resp.status, answer or {}
