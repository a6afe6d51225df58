"""A scripted model server on 127.0.0.1 that speaks what agents call, all streaming.

- OpenAI Chat Completions: ``POST /v1/chat/completions`` (the ``openai`` agent);
- OpenAI Responses: ``POST /v1/responses`` (Codex, codex-acp);
- Anthropic Messages: ``POST /v1/messages`` (Claude Code through ACP);
- Gemini: ``POST /v1beta/models/MODEL:streamGenerateContent`` (Gemini CLI).

Each call of an agent's loop takes the next step of one agent-neutral script:

- ``{"text": "…"}``: a streamed text reply;
- ``{"tool": NAME, "args": {…}}``: a call of the named tool;
- ``{"shell": "COMMAND"}``: a call of the agent's own shell tool, picked from the tools in
  the request (``exec_command``, ``Bash``, ``mcp__acp__Bash``, ``run_shell_command``,
  ``shell``);
- ``{"status": 429, "retry_after": "0"}`` (or any status): an HTTP error;
- ``{"break": True}``: a first piece of text, then the connection is cut mid-stream;
- ``{"custom": NAME, "input": "…"}``: a freeform tool call (Codex's ``apply_patch``);
- any step may carry ``"delay": SECONDS``, waited before it is answered.

Calls outside the loop are answered without taking a step: an Anthropic call without
tools gets a short text, a Gemini call asking for JSON gets ``{}``. Every request body is
kept (``requests``, with ``paths``) so a test can see what the model was told. The event
sequences are the minimal ones the agents accept (docs: ../shared/reference/agents.md §4).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

__all__ = ["SHELL_TOOLS", "ModelServer"]

SHELL_TOOLS = {
    "exec_command": "cmd",
    "Bash": "command",
    "mcp__acp__Bash": "command",
    "run_shell_command": "command",
    "shell": "command",
}
"""Each agent's shell tool and the name of its command argument."""

_USAGE = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}


class ModelServer:
    def __init__(self, script: list[dict[str, Any]], *, delay: float = 0.0) -> None:
        self.script = list(script)
        self.delay = delay
        """Seconds before each answer starts (a model's time to first token)."""
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        """``http://127.0.0.1:PORT/v1`` (OpenAI style); :attr:`root` has no ``/v1``."""
        self.root = ""

    async def start(self) -> ModelServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1beta/models/{model_call}", self._gemini)
        # a test that ends while a delayed answer is pending does not wait for it
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}"
        self.url = f"{self.root}/v1"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- the script ----------------------------------------------------------------

    async def _step(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        self.paths.append(request.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.script:
            return {"status": 500, "message": "script exhausted"}
        step = self.script.pop(0)
        if step.get("delay"):
            await asyncio.sleep(float(step["delay"]))
        if "shell" in step:
            name, arg = _shell_tool(body)
            step = {"tool": name, "args": {arg: step["shell"]}}
        return step

    @staticmethod
    def _error(step: dict[str, Any]) -> web.Response:
        headers = {"retry-after": str(step.get("retry_after", "0"))}
        message = step.get("message", f"scripted {step['status']}")
        error = {"error": {"message": message, "type": "scripted"}}
        return web.json_response(error, status=int(step["status"]), headers=headers)

    @staticmethod
    async def _sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        return response

    @staticmethod
    async def _cut(request: web.Request) -> None:
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # mid-stream: no end event

    # ---- OpenAI Chat Completions ---------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        step = await self._step(request, body)
        if "status" in step:
            return self._error(step)
        response = await self._sse(request)
        model = body.get("model", "scripted")

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if step.get("break"):
            await send({"role": "assistant", "content": "half a"})
            await self._cut(request)
            return response
        if "tool" in step:
            args = json.dumps(step.get("args", {}))
            cut = len(args) // 2
            call = {"index": 0, "id": f"call_{len(self.requests)}", "type": "function"}
            first = {**call, "function": {"name": step["tool"], "arguments": args[:cut]}}
            await send({"role": "assistant", "tool_calls": [first]})
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
            "usage": _USAGE,
        }
        await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # ---- OpenAI Responses ------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        step = await self._step(request, body)
        if "status" in step:
            return self._error(step)
        response = await self._sse(request)
        n = len(self.requests)
        base = {"id": f"resp_{n}", "object": "response", "model": body.get("model", "scripted")}

        async def send(kind: str, data: dict[str, Any]) -> None:
            payload = json.dumps({"type": kind, **data})
            await response.write(f"event: {kind}\ndata: {payload}\n\n".encode())

        await send(
            "response.created", {"response": {**base, "status": "in_progress", "output": []}}
        )
        if "custom" in step:
            item = {
                "type": "custom_tool_call",
                "id": f"ctc_{n}",
                "call_id": f"call_{n}",
                "name": step["custom"],
                "input": step.get("input", ""),
                "status": "completed",
            }
            await send(
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "status": "in_progress"}},
            )
            await send("response.output_item.done", {"output_index": 0, "item": item})
        elif "tool" in step:
            item = {
                "type": "function_call",
                "id": f"fc_{n}",
                "call_id": f"call_{n}",
                "name": step["tool"],
                "arguments": json.dumps(step.get("args", {})),
                "status": "completed",
            }
            await send(
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "status": "in_progress"}},
            )
            await send("response.output_item.done", {"output_index": 0, "item": item})
        else:
            text = "half a" if step.get("break") else str(step.get("text", ""))
            item_id = f"msg_{n}"
            added = {
                "type": "message",
                "id": item_id,
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            await send("response.output_item.added", {"output_index": 0, "item": added})
            await send(
                "response.output_text.delta",
                {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": text},
            )
            if step.get("break"):
                await self._cut(request)
                return response
            part = {"type": "output_text", "text": text, "annotations": []}
            item = {**added, "status": "completed", "content": [part]}
            await send("response.output_item.done", {"output_index": 0, "item": item})
        usage = {"input_tokens": 100, "output_tokens": 7, "total_tokens": 107}
        done = {**base, "status": "completed", "output": [item], "usage": usage}
        await send("response.completed", {"response": done})
        await response.write_eof()
        return response

    # ---- Anthropic Messages ----------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("tools"):  # a side call (titles, summaries): no step is taken
            self.requests.append(body)
            self.paths.append(request.path)
            step: dict[str, Any] = {"text": "ok"}
        else:
            step = await self._step(request, body)
        if "status" in step:
            return self._error(step)
        response = await self._sse(request)
        n = len(self.requests)

        async def send(kind: str, data: dict[str, Any]) -> None:
            payload = json.dumps({"type": kind, **data})
            await response.write(f"event: {kind}\ndata: {payload}\n\n".encode())

        message = {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "scripted"),
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 100, "output_tokens": 0},
        }
        await send("message_start", {"message": message})
        if "tool" in step:
            block = {"type": "tool_use", "id": f"toolu_{n}", "name": step["tool"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(step.get("args", {}))}
            stop = "tool_use"
        else:
            text = "half a" if step.get("break") else str(step.get("text", ""))
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": text}
            stop = "end_turn"
        await send("content_block_start", {"index": 0, "content_block": block})
        await send("content_block_delta", {"index": 0, "delta": delta})
        if step.get("break"):
            await self._cut(request)
            return response
        await send("content_block_stop", {"index": 0})
        await send("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 7}})
        await send("message_stop", {})
        await response.write_eof()
        return response

    # ---- Gemini ----------------------------------------------------------------------

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        config = body.get("generationConfig") or {}
        if config.get("responseMimeType") == "application/json":  # a side call
            self.requests.append(body)
            self.paths.append(request.path)
            step: dict[str, Any] = {"text": "{}"}
        else:
            step = await self._step(request, body)
        if "status" in step:
            return self._error(step)
        response = await self._sse(request)
        if "tool" in step:
            part: dict[str, Any] = {
                "functionCall": {"name": step["tool"], "args": step.get("args", {})}
            }
        else:
            part = {"text": "half a" if step.get("break") else str(step.get("text", ""))}
        if step.get("break"):
            await self._cut(request)
            return response
        event = {
            "candidates": [
                {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": 100,
                "candidatesTokenCount": 7,
                "totalTokenCount": 107,
            },
        }
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response


def _shell_tool(body: dict[str, Any]) -> tuple[str, str]:
    """The shell tool among the tools a request offers, whatever its API's format."""
    names: list[str] = []
    for tool in body.get("tools") or []:
        names.append(tool.get("name") or (tool.get("function") or {}).get("name") or "")
        for decl in tool.get("functionDeclarations") or []:
            names.append(decl.get("name", ""))
    for name in names:
        if name in SHELL_TOOLS:
            return name, SHELL_TOOLS[name]
    raise ValueError(f"the request offers no shell tool (it offers {names})")
