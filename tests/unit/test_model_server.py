"""The scripted model server speaks each API the way its clients expect (agents.md §4)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.model_server import ModelServer


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    s = await ModelServer([]).start()
    yield s
    await s.close()


async def sse(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every server-sent event of a POST."""
    out: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        name = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                out.append((name or data.get("type", ""), data))
                name = ""
    return out


async def test_responses_through_the_openai_sdk(server: ModelServer) -> None:
    server.script = [{"shell": "ls -la"}, {"text": "all good"}]
    client = openai.AsyncOpenAI(api_key="x", base_url=server.url)
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
    events = [
        e
        async for e in await client.responses.create(
            model="m", input="hi", tools=tools, stream=True
        )
    ]  # type: ignore[arg-type]
    assert [e.type for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    call = events[2].item  # type: ignore[union-attr]
    assert (call.type, call.name, json.loads(call.arguments)) == (
        "function_call",
        "exec_command",
        {"cmd": "ls -la"},
    )
    events = [e async for e in await client.responses.create(model="m", input="hi", stream=True)]
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == "all good"
    assert done.usage is not None
    assert server.paths == ["/v1/responses", "/v1/responses"]


async def test_anthropic_messages_and_side_calls(server: ModelServer) -> None:
    server.script = [{"shell": "pwd"}]
    side = await sse(f"{server.root}/v1/messages", {"model": "c", "messages": []})  # no tools
    assert side[2][1]["delta"] == {"type": "text_delta", "text": "ok"}
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    events = await sse(
        f"{server.root}/v1/messages?beta=true", {"model": "c", "messages": [], "tools": tools}
    )
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"]["name"] == "Bash"
    assert json.loads(events[2][1]["delta"]["partial_json"]) == {"command": "pwd"}
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"
    assert server.script == []  # the side call took no step


async def test_gemini_stream_generate_content(server: ModelServer) -> None:
    server.script = [{"shell": "git status"}, {"text": "fine"}]
    url = f"{server.root}/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
    tools = [{"functionDeclarations": [{"name": "run_shell_command"}]}]
    side = await sse(
        url, {"contents": [], "generationConfig": {"responseMimeType": "application/json"}}
    )
    assert side[0][1]["candidates"][0]["content"]["parts"] == [{"text": "{}"}]
    (event,) = await sse(url, {"contents": [], "tools": tools})
    candidate = event[1]["candidates"][0]
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "run_shell_command", "args": {"command": "git status"}}}
    ]
    assert candidate["finishReason"] == "STOP"
    assert "usageMetadata" in event[1]
    (text,) = await sse(url, {"contents": []})
    assert text[1]["candidates"][0]["content"]["parts"] == [{"text": "fine"}]


async def test_errors_and_a_missing_shell_tool(server: ModelServer) -> None:
    server.script = [{"status": 429, "retry_after": "0"}]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/responses", json={}) as resp:
            assert (resp.status, resp.headers["retry-after"]) == (429, "0")
        async with http.post(f"{server.url}/chat/completions", json={}) as resp:
            assert resp.status == 500  # the script is exhausted: the test is wrong, loudly
    server.script = [{"shell": "ls"}]  # the agent offers no shell tool: the test fails loudly
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/chat/completions", json={"tools": []}) as resp,
    ):
        assert resp.status == 500
