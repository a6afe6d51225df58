"""A scripted OpenAI-compatible model server on 127.0.0.1 (Chat Completions, streaming).

Each ``POST /v1/chat/completions`` takes the next step of the script:

- ``{"text": "…"}``: a streamed text reply (in two pieces), then usage;
- ``{"tool": NAME, "args": {…}}``: one streamed tool call (its arguments in two pieces);
- ``{"status": 429, "retry_after": "0"}`` (or any status): an HTTP error, as a server says it;
- ``{"break": True}``: a first piece of text, then the connection is cut mid-stream.

Every request body is kept (``requests``) so a test can see what the model was told.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

__all__ = ["ModelServer"]


class ModelServer:
    def __init__(self, script: list[dict[str, Any]], *, delay: float = 0.0) -> None:
        self.script = list(script)
        self.delay = delay
        """Seconds before each answer starts (a model's time to first token)."""
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> ModelServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.script:
            return web.json_response({"error": {"message": "script exhausted"}}, status=500)
        step = self.script.pop(0)
        if "status" in step:
            headers = {"retry-after": str(step.get("retry_after", "0"))}
            error = {"error": {"message": f"scripted {step['status']}", "type": "scripted"}}
            return web.json_response(error, status=int(step["status"]), headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = body.get("model", "scripted")

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if step.get("break"):
            await send({"role": "assistant", "content": "half a"})
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()  # cut mid-stream: no finish, no [DONE]
            return response
        if "tool" in step:
            args = json.dumps(step.get("args", {}))
            cut = len(args) // 2
            call = {"index": 0, "id": f"call_{len(self.requests)}", "type": "function"}
            await send(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {**call, "function": {"name": step["tool"], "arguments": args[:cut]}}
                    ],
                }
            )
            await send({"tool_calls": [{"index": 0, "function": {"arguments": args[cut:]}}]})
            await send({}, "tool_calls")
        else:
            text = str(step.get("text", ""))
            cut = len(text) // 2
            await send({"role": "assistant", "content": text[:cut]})
            await send({"content": text[cut:]})
            await send({}, "stop")
        usage = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107},
        }
        await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
