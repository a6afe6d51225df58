"""A Feishu stand-in for tests: the open platform's paths that the real ``lark-oapi`` SDK
calls, on 127.0.0.1, in a thread of its own (the SDK's token fetch blocks whatever loop
calls it, so the stand-in never shares one).

It serves the tenant token, long-connection endpoint discovery and the WebSocket (frames
built with the SDK's own vendored ``Frame``), and the ``im`` message paths. Tests push
events (as ``event`` or ``card`` frames, whole or in fragments), read the acks, see every
call, and inject failures: a code or status for the next call to a path, a rotated token,
a dropped connection, a refused discovery.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BodyPartReader, WSMsgType, web
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from tests.support.process import SCALE

CONTROL, DATA = 0, 1
TEXT_LIMIT = 150 * 1024
POST_LIMIT = 30 * 1024


@dataclass
class Ack:
    """What the client answered to a pushed frame."""

    code: int
    data: Any
    headers: dict[str, str]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    status: int = 200
    code: int = 0
    msg: str = "injected"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class FeishuStandIn:
    """Start with :meth:`start`, stop with :meth:`stop` (or use :func:`feishu_stand_in`)."""

    def __init__(self, *, app_id: str | None = None, app_secret: str = "s3cr3t") -> None:  # noqa: S107 - a stand-in's
        self.app_id = app_id or f"cli_{secrets.token_hex(6)}"  # the SDK caches tokens by app id
        self.app_secret = app_secret
        self.bot_open_id = "ou_bot"
        self.token = f"t-{secrets.token_hex(8)}"
        self.calls: list[Call] = []
        self.acks: dict[int, Ack] = {}
        self.pings = 0
        self.connects = 0
        self.discovery_code = 0
        self.client_config = {
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": 120,
        }
        self.messages: dict[str, dict[str, Any]] = {}
        self.users: dict[str, str] = {}  # open_id -> name, for the contact API
        self.scopes: dict[str, int] = {}  # scope -> grant status (1 granted, 2 not)
        self._slow: dict[str, list[float]] = {}
        self.chat_of: dict[str, str] = {}  # message id -> its chat (for the rate limit)
        self.per_chat_rate = 5  # sends a second to one chat, as Feishu allows
        self.per_app_rate = 50  # sends a second for the whole app
        self._app_sends: list[float] = []
        self._patches: dict[str, list[float]] = {}
        self.card_entities: dict[str, dict[str, Any]] = {}
        """CardKit cards: ``card`` (its JSON), ``texts`` (element id -> text), ``sequence``,
        ``streaming``, ``updates`` (when each content call came)."""
        self.rate_violations: list[str] = []
        self.resources: dict[tuple[str, str], tuple[bytes, str]] = {}
        """(message id, image or file key) -> (bytes, content type): what people sent."""
        self.uploads: dict[str, dict[str, Any]] = {}
        """Image and file keys the app uploaded -> ``kind``, ``name``, ``data``, ``type``."""
        self._sends: dict[str, list[float]] = {}
        self._failures: dict[str, list[Failure]] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._sockets: set[web.WebSocketResponse] = set()
        self._pongs: set[asyncio.Future[None]] = set()
        self._acked: dict[int, Future[Ack]] = {}
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> FeishuStandIn:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=main, name="feishu-stand-in", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Feishu stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_post("/callback/ws/endpoint", self._endpoint)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/open-apis/bot/v3/info", self._bot_info)
        app.router.add_post("/open-apis/im/v1/messages", self._create)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        app.router.add_put("/open-apis/im/v1/messages/{message_id}", self._update)
        app.router.add_get("/open-apis/im/v1/messages/{message_id}", self._get_message)
        app.router.add_get("/open-apis/contact/v3/users/{user_id}", self._get_user)
        app.router.add_get("/open-apis/application/v6/scopes", self._get_scopes)
        app.router.add_post("/open-apis/cardkit/v1/cards", self._card_create)
        app.router.add_put(
            "/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content",
            self._card_content,
        )
        app.router.add_patch("/open-apis/cardkit/v1/cards/{card_id}/settings", self._card_settings)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self._patch)
        app.router.add_get(
            "/open-apis/im/v1/messages/{message_id}/resources/{file_key}", self._get_resource
        )
        app.router.add_post("/open-apis/im/v1/images", self._upload_image)
        app.router.add_post("/open-apis/im/v1/files", self._upload_file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(10)

    # ---- what tests do ---------------------------------------------------------------

    def fail_next(self, path: str, failure: Failure, times: int = 1) -> None:
        """The next ``times`` calls whose path starts with ``path`` get ``failure``."""
        self._failures.setdefault(path, []).extend([failure] * times)

    def slow_next(self, path: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls whose path starts with ``path`` answer after ``seconds``."""
        self._slow.setdefault(path, []).extend([seconds] * times)

    def seed_message(
        self, message_id: str, chat_id: str, text: str, *, sender: str = "ou_someone"
    ) -> None:
        """A message a person sent earlier (for the get-message path)."""
        self.messages[message_id] = {
            "msg_type": "text",
            "content": json.dumps({"text": text}),
            "sender": sender,
            "chat_id": chat_id,
        }
        self.chat_of[message_id] = chat_id

    def seed_resource(
        self, message_id: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """An image or file a person's message ``message_id`` carries (for the download)."""
        self.resources[(message_id, key)] = (data, content_type)

    def sent_files(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Image and file messages sent, each with what was uploaded for it."""
        found = []
        for known in list(self.messages.values()):
            if known.get("msg_type") in ("image", "file"):
                content = json.loads(str(known.get("content") or "{}"))
                key = content.get("image_key") or content.get("file_key")
                found.append((known, self.uploads.get(str(key), {})))
        return found

    def heal(self) -> None:
        """Forget every failure still queued."""
        self._failures.clear()

    def rotate_token(self) -> None:
        """Issue a new token: the one the client holds now gets 99991663."""
        self.token = f"t-{secrets.token_hex(8)}"

    def drop_connections(self) -> None:
        """Close every long connection from the server's side."""

        async def close() -> None:
            for ws in list(self._sockets):
                await ws.close()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    @property
    def connected(self) -> int:
        return len(self._sockets)

    def push(
        self,
        event_type: str,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        frame_type: str = "event",
        fragments: int = 1,
        drop_header: str | None = None,
    ) -> Future[Ack]:
        """Send one event on the long connection; the future holds its ack."""
        message = event.get("message") if isinstance(event, dict) else None
        if isinstance(message, dict) and message.get("message_id"):
            self.chat_of[str(message["message_id"])] = str(message.get("chat_id", ""))
        envelope = {
            "schema": "2.0",
            "header": {
                "event_id": event_id or f"ev_{secrets.token_hex(8)}",
                "event_type": event_type,
                "create_time": str(int(time.time() * 1000)),
                "token": "",
                "app_id": self.app_id,
                "tenant_key": "tenant",
            },
            "event": event,
        }
        return self.push_raw(
            json.dumps(envelope).encode(),
            frame_type=frame_type,
            fragments=fragments,
            drop_header=drop_header,
        )

    def push_raw(
        self,
        payload: bytes,
        *,
        frame_type: str = "event",
        fragments: int = 1,
        drop_header: str | None = None,
    ) -> Future[Ack]:
        acked: Future[Ack] = Future()
        seq = next(self._seq)
        self._acked[seq] = acked
        message_id = f"msg_{secrets.token_hex(6)}"
        size = -(-len(payload) // fragments)
        parts = [payload[i * size : (i + 1) * size] for i in range(fragments)]
        frames = []
        for index, part in enumerate(parts):
            frame = Frame()
            frame.SeqID = seq
            frame.LogID = seq
            frame.service = 1
            frame.method = DATA
            headers = {
                "type": frame_type,
                "message_id": message_id,
                "sum": str(fragments),
                "seq": str(index),
                "trace_id": f"trace-{seq}",
            }
            for key, value in headers.items():
                if key != drop_header:
                    h = frame.headers.add()
                    h.key, h.value = key, value
            frame.payload = part
            frames.append(frame.SerializeToString())

        async def send() -> None:
            if not self._sockets:
                raise ConnectionError("no long connection to push on")
            ws = next(iter(self._sockets))
            for data in frames:
                await ws.send_bytes(data)

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)
        return acked

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the Feishu stand-in never saw what was waited for")
                self._changed.wait(min(remaining, 0.2))

    def sent(self, path_part: str = "/messages") -> list[Call]:
        return [c for c in self.calls if path_part in c.path and c.method != "GET"]

    def _note(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    # ---- HTTP paths ------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._note(Call("POST", request.path, dict(request.query), dict(request.headers), body))
        if failure := self._failure(request.path):
            return self._failed(failure)
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": self.token, "expire": 7200}
        )

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._note(Call("POST", request.path, {}, dict(request.headers), body))
        if failure := self._failure(request.path):
            return self._failed(failure)
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return web.json_response({"code": 1000040344, "msg": "bad credentials"})
        if self.discovery_code:
            return web.json_response({"code": self.discovery_code, "msg": "refused"})
        ws = self.url.replace("http://", "ws://")
        return web.json_response(
            {
                "code": 0,
                "msg": "ok",
                "data": {
                    "URL": f"{ws}/ws?device_id=dev{next(self._ids)}&service_id=1",
                    "ClientConfig": self.client_config,
                },
            }
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        with self._changed:
            self.connects += 1
            self._changed.notify_all()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    self._frame(ws, msg.data)
        finally:
            self._sockets.discard(ws)
            with self._changed:
                self._changed.notify_all()
        return ws

    def _frame(self, ws: web.WebSocketResponse, data: bytes) -> None:
        frame = Frame()
        frame.ParseFromString(data)
        headers = {h.key: h.value for h in frame.headers}
        if frame.method == CONTROL and headers.get("type") == "ping":
            with self._changed:
                self.pings += 1
            pong = Frame()
            pong.SeqID, pong.LogID, pong.service, pong.method = 0, 0, frame.service, CONTROL
            h = pong.headers.add()
            h.key, h.value = "type", "pong"
            pong.payload = json.dumps(self.client_config).encode()
            self._pongs.add(task := asyncio.ensure_future(ws.send_bytes(pong.SerializeToString())))
            task.add_done_callback(self._pongs.discard)
            return
        if frame.method != DATA:
            return
        answer = json.loads(frame.payload or b"{}")
        data_field = answer.get("data")
        decoded = json.loads(base64.b64decode(data_field)) if data_field else None
        ack = Ack(code=int(answer.get("code", 0)), data=decoded, headers=headers)
        with self._changed:
            self.acks[frame.SeqID] = ack
            self._changed.notify_all()
        waiting = self._acked.pop(frame.SeqID, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(ack)

    async def _bot_info(self, request: web.Request) -> web.Response:
        self._note(Call("GET", request.path, {}, dict(request.headers), None))
        if denied := self._check_token(request):
            return denied
        return web.json_response(
            {"code": 0, "msg": "ok", "bot": {"open_id": self.bot_open_id, "app_name": "tether"}}
        )

    async def _read(self, request: web.Request) -> web.Response | None:
        """A GET noted, slowed and failed as told; None when it may be answered."""
        self._note(Call("GET", request.path, dict(request.query), dict(request.headers), None))
        for prefix, delays in self._slow.items():
            if request.path.startswith(prefix) and delays:
                await asyncio.sleep(delays.pop(0))
                break
        if denied := self._check_token(request):
            return denied
        if failure := self._failure(request.path):
            return self._failed(failure)
        return None

    async def _get_message(self, request: web.Request) -> web.Response:
        if refused := await self._read(request):
            return refused
        message_id = request.match_info["message_id"]
        known = self.messages.get(message_id)
        if known is None:
            return web.json_response({"code": 230001, "msg": "message not found"}, status=400)
        item = {
            "message_id": message_id,
            "msg_type": known.get("msg_type"),
            "chat_id": known.get("chat_id", self.chat_of.get(message_id, "")),
            "body": {"content": known.get("content", "")},
            "sender": {"id": known.get("sender", self.bot_open_id), "id_type": "open_id"},
        }
        return self._ok({"items": [item]})

    async def _get_resource(self, request: web.Request) -> web.StreamResponse:
        if refused := await self._read(request):
            return refused
        kind = request.query.get("type")
        if kind not in ("image", "file"):
            return web.json_response({"code": 234001, "msg": "Invalid request param."}, status=400)
        key = (request.match_info["message_id"], request.match_info["file_key"])
        found = self.resources.get(key)
        if found is None:  # a key of another message is not served through this one
            return web.json_response({"code": 234003, "msg": "File not in msg."}, status=400)
        data, content_type = found
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{key[1]}"'},
        )

    async def _upload(self, request: web.Request, kind: str, limit: int) -> web.Response:
        # the SDK sends the file as a part without a file name: read every part as bytes
        parts: dict[str, bytes] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name:
                parts[part.name] = await part.read()
        fields = {k: v.decode(errors="replace") for k, v in parts.items() if k != kind}
        self._note(Call("POST", request.path, dict(request.query), dict(request.headers), fields))
        if denied := self._check_token(request):
            return denied
        if failure := self._failure(request.path):
            return self._failed(failure)
        data = parts.get(kind)
        if data is None:
            return web.json_response({"code": 234001, "msg": "Invalid request param."}, status=400)
        if len(data) > limit:
            return web.json_response(
                {"code": 234006, "msg": "The file size exceeds the limit."}, status=400
            )
        prefix = "img_v3_" if kind == "image" else "file_v3_"
        key = f"{prefix}{secrets.token_hex(8)}"
        name = fields.get("file_name", "")
        self.uploads[key] = {"kind": kind, "name": name, "data": data, "type": fields}
        return self._ok({f"{kind}_key": key} if kind == "image" else {"file_key": key})

    async def _upload_image(self, request: web.Request) -> web.Response:
        return await self._upload(request, "image", 10 * 1024 * 1024)

    async def _upload_file(self, request: web.Request) -> web.Response:
        return await self._upload(request, "file", 30 * 1024 * 1024)

    async def _get_user(self, request: web.Request) -> web.Response:
        if refused := await self._read(request):
            return refused
        user_id = request.match_info["user_id"]
        if request.query.get("user_id_type") != "open_id" or user_id not in self.users:
            return web.json_response({"code": 41050, "msg": "no user authority"}, status=400)
        return self._ok({"user": {"open_id": user_id, "name": self.users[user_id]}})

    async def _get_scopes(self, request: web.Request) -> web.Response:
        if refused := await self._read(request):
            return refused
        scopes = [{"scope_name": k, "grant_status": v} for k, v in self.scopes.items()]
        return self._ok({"scopes": scopes})

    async def _kit(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self._note(Call(request.method, request.path, {}, dict(request.headers), body))
        if denied := self._check_token(request):
            return body, denied
        if failure := self._failure(request.path):
            return body, self._failed(failure)
        return body, None

    async def _card_create(self, request: web.Request) -> web.Response:
        body, refused = await self._kit(request)
        if refused:
            return refused
        card = json.loads(body.get("data") or "{}")
        card_id = f"card_{next(self._ids)}"
        texts = {
            e["element_id"]: e.get("content", "")
            for e in (card.get("body") or {}).get("elements", [])
            if e.get("element_id")
        }
        self.card_entities[card_id] = {
            "card": card, "texts": texts, "sequence": 0, "updates": [],
            "streaming": bool((card.get("config") or {}).get("streaming_mode")),
        }  # fmt: skip
        return self._ok({"card_id": card_id})

    def _sequenced(self, card_id: str, sequence: Any) -> web.Response | None:
        entity = self.card_entities.get(card_id)
        if entity is None:
            return web.json_response({"code": 300301, "msg": "card not found"}, status=400)
        if not isinstance(sequence, int) or sequence <= entity["sequence"]:
            self.rate_violations.append(f"sequence:{card_id}")
            return web.json_response({"code": 300317, "msg": "sequence error"}, status=400)
        entity["sequence"] = sequence
        return None

    async def _card_content(self, request: web.Request) -> web.Response:
        body, refused = await self._kit(request)
        if refused:
            return refused
        card_id, element = request.match_info["card_id"], request.match_info["element_id"]
        if wrong := self._sequenced(card_id, body.get("sequence")):
            return wrong
        entity = self.card_entities[card_id]
        if element not in entity["texts"]:
            return web.json_response({"code": 300302, "msg": "element not found"}, status=400)
        now = time.monotonic()
        if len([t for t in entity["updates"] if now - t < 1.0]) >= 10:
            self.rate_violations.append(f"cardkit:{card_id}")
        entity["updates"].append(now)
        entity["texts"][element] = body.get("content", "")
        return self._ok({})

    async def _card_settings(self, request: web.Request) -> web.Response:
        body, refused = await self._kit(request)
        if refused:
            return refused
        card_id = request.match_info["card_id"]
        if wrong := self._sequenced(card_id, body.get("sequence")):
            return wrong
        settings = json.loads(body.get("settings") or "{}")
        if "streaming_mode" in (settings.get("config") or {}):
            self.card_entities[card_id]["streaming"] = bool(settings["config"]["streaming_mode"])
        return self._ok({})

    async def _create(self, request: web.Request) -> web.Response:
        return await self._message(request, None)

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._message(request, request.match_info["message_id"])

    async def _message(self, request: web.Request, reply_to: str | None) -> web.Response:
        body = await request.json()
        self._note(Call("POST", request.path, dict(request.query), dict(request.headers), body))
        if denied := self._check_token(request):
            return denied
        if failure := self._failure(request.path):
            return self._failed(failure)
        if too_big := self._too_big(body):
            return too_big
        if body.get("msg_type") in ("image", "file"):
            content = json.loads(str(body.get("content") or "{}"))
            key = content.get(f"{body['msg_type']}_key")
            if self.uploads.get(str(key), {}).get("kind") != body["msg_type"]:
                return web.json_response({"code": 230001, "msg": "invalid key"}, status=400)
        chat = body.get("receive_id") if reply_to is None else self.chat_of.get(reply_to, reply_to)
        if limited := self._rate_limited(str(chat)):
            return limited
        uuid = body.get("uuid")
        for message_id, known in self.messages.items():
            if uuid and known.get("uuid") == uuid:  # the same uuid: the same message
                return self._ok({"message_id": message_id})
        message_id = f"om_{next(self._ids)}"
        self.messages[message_id] = {**body, "reply_to": reply_to}
        return self._ok({"message_id": message_id, "msg_type": body.get("msg_type")})

    async def _update(self, request: web.Request) -> web.Response:
        return await self._edit(request)

    async def _patch(self, request: web.Request) -> web.Response:
        return await self._edit(request)

    async def _edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._note(Call(request.method, request.path, {}, dict(request.headers), body))
        if denied := self._check_token(request):
            return denied
        if failure := self._failure(request.path):
            return self._failed(failure)
        message_id = request.match_info["message_id"]
        if message_id not in self.messages:
            return web.json_response({"code": 230001, "msg": "message not found"}, status=400)
        if too_big := self._too_big(body):
            return too_big
        known = self.messages[message_id]
        if request.method == "PATCH":  # cards only, each with update_multi, 5 a second
            if known.get("msg_type") != "interactive":
                return web.json_response({"code": 230001, "msg": "not a card"}, status=400)
            for content in (known.get("content", "{}"), body.get("content", "{}")):
                if not (json.loads(content).get("config") or {}).get("update_multi"):
                    return web.json_response(
                        {"code": 230099, "msg": "card is not update_multi"}, status=400
                    )
            if limited := self._patch_limited(message_id):
                return limited
            known.setdefault("patches", 0)
            known["patches"] += 1
        known.update(body)
        return self._ok({"message_id": message_id})

    def _patch_limited(self, message_id: str) -> web.Response | None:
        now = time.monotonic()
        recent = [t for t in self._patches.get(message_id, []) if now - t < 1.0]
        if len(recent) >= 5:
            self.rate_violations.append(f"patch:{message_id}")
            return web.json_response({"code": 230020, "msg": "frequency limit"}, status=400)
        self._patches[message_id] = [*recent, now]
        return None

    def cards(self, reply_to: str) -> list[tuple[str, dict[str, Any]]]:
        """The cards sent in answer to a message: (message id, card JSON)."""
        return [
            (mid, json.loads(m["content"]))
            for mid, m in list(self.messages.items())
            if m.get("reply_to") == reply_to and m.get("msg_type") == "interactive"
        ]

    # ---- checks and answers ------------------------------------------------------------

    def _check_token(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {"code": 99991663, "msg": "Invalid access token for authorization"}, status=400
            )
        return None

    def _too_big(self, body: dict[str, Any]) -> web.Response | None:
        content = str(body.get("content", ""))
        limit = TEXT_LIMIT if body.get("msg_type") == "text" else POST_LIMIT
        if len(content.encode()) > limit:
            return web.json_response({"code": 230025, "msg": "content too long"}, status=400)
        return None

    def _rate_limited(self, chat: str) -> web.Response | None:
        """Feishu's 5 sends a second to one chat (the next one gets 230020) and 50 a second
        for the app (99991400 with HTTP 429)."""
        now = time.monotonic()
        recent = [t for t in self._sends.get(chat, []) if now - t < 1.0]
        self._app_sends = [t for t in self._app_sends if now - t < 1.0]
        if len(self._app_sends) >= self.per_app_rate:
            self.rate_violations.append("(app)")
            return web.json_response(
                {"code": 99991400, "msg": "request trigger frequency limit"},
                status=429,
                headers={"x-ogw-ratelimit-reset": "1"},
            )
        if len(recent) >= self.per_chat_rate:
            self.rate_violations.append(chat)
            return web.json_response(
                {"code": 230020, "msg": "frequency limit"},
                status=400,
                headers={"x-ogw-ratelimit-reset": "1"},
            )
        self._sends[chat] = [*recent, now]
        self._app_sends.append(now)
        return None

    def _failure(self, path: str) -> Failure | None:
        for prefix, queued in self._failures.items():
            if path.startswith(prefix) and queued:
                return queued.pop(0)
        return None

    @staticmethod
    def _failed(failure: Failure) -> web.Response:
        if failure.raw is not None:
            return web.Response(
                body=failure.raw, status=failure.status, headers=failure.headers,
                content_type="text/html",
            )  # fmt: skip
        return web.json_response(
            {"code": failure.code, "msg": failure.msg},
            status=failure.status,
            headers=failure.headers,
        )

    @staticmethod
    def _ok(data: dict[str, Any]) -> web.Response:
        return web.json_response({"code": 0, "msg": "success", "data": data})


# ---- cards, as a test reads and clicks them -----------------------------------------


def texts(card: dict[str, Any]) -> str:
    """Every Markdown and label of a card, as one text."""
    return json.dumps(card, ensure_ascii=False)


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A card's buttons: label -> the value a click sends."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") == "button":
                found[node["text"]["content"]] = node["behaviors"][0]["value"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


def all_cards(stand_in: FeishuStandIn) -> list[tuple[str, dict[str, Any]]]:
    """Every card sent so far: (message id, card JSON)."""
    return [
        (mid, json.loads(m["content"]))
        for mid, m in list(stand_in.messages.items())
        if m.get("msg_type") == "interactive"
    ]


def request_card(stand_in: FeishuStandIn, timeout: float = 30) -> tuple[str, dict[str, Any]]:
    """The one card with buttons (wait for it, ``timeout`` seconds scaled)."""
    stand_in.wait_for(lambda: any(buttons(c) for _, c in all_cards(stand_in)), timeout * SCALE)
    [found] = [(mid, c) for mid, c in all_cards(stand_in) if buttons(c)]
    return found


def click(
    stand_in: FeishuStandIn,
    value: dict[str, Any],
    *,
    by: str,
    card_id: str,
    frame_type: str = "event",
) -> Ack:
    """``by`` clicks a button whose value is ``value`` on card ``card_id`` in the p2p chat
    (a ``card.action.trigger`` in an ``event`` or a ``card`` frame); the client's ack."""
    event = {
        "operator": {"open_id": by},
        "token": f"c-{secrets.token_hex(8)}",
        "action": {"value": value, "tag": "button"},
        "context": {"open_message_id": card_id, "open_chat_id": "oc_p2p"},
    }
    return stand_in.push("card.action.trigger", event, frame_type=frame_type).result(10 * SCALE)


def write_config(
    home: Path,
    stand_in: FeishuStandIn,
    *,
    secret_env: str,
    mode: str = "long_connection",
    session_mode: str = "auto",
    agent: str = "operator",
    streaming: bool = False,
) -> None:
    """A gateway config whose Feishu channel is this stand-in's app; new sessions run the
    ``agent`` on runner ``box``, workspace ``app``, in ``session_mode``."""
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(
        f"""
[channels.feishu]
app_id = "{stand_in.app_id}"
app_secret_env = "{secret_env}"
domain = "{stand_in.url}"
mode = "{mode}"
streaming = {"true" if streaming else "false"}

[channels.feishu.defaults]
agent = "{agent}"
runner = "box"
workspace = "app"
mode = "{session_mode}"
"""
    )


@contextlib.contextmanager
def feishu_stand_in(**kwargs: Any) -> Iterator[FeishuStandIn]:
    stand_in = FeishuStandIn(**kwargs).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def stand_in() -> Iterator[FeishuStandIn]:
    """A running stand-in (use with ``from tests.support.feishu import stand_in``)."""
    with feishu_stand_in() as s:
        yield s
