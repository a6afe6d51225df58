"""``openai``: a tool-calling loop on any OpenAI-compatible Chat Completions endpoint.

Each round streams one model call (``agent.delta`` as text arrives, ``agent.usage`` with
what the server reported), then runs the tool calls the model asked for through
``ctx.call_tool``, so policy, approvals and the run's authorization decide each one. A
call that did not run is reported to the model as such, never as a result. Steering
input is read between rounds. The conversation is trimmed to fit ``context_tokens``,
estimated from characters (no tokenizer files are needed) and corrected by the usage
each call reports. A run resumed after a gateway restart rebuilds its conversation from
the messages each round recorded in its ``agent.step``. Model errors get bounded retries (the SDK honours
``retry-after`` on 429 and retries 5xx and timeouts; a stream that breaks is retried
here) and end the run with a message a person can act on.

Configured in ``[agents.openai]``: ``model`` (required for the agent to be offered),
``base_url``, and ``api_key_env``, the environment variable that holds the key.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tether import __version__
from tether.agents.contract import Capabilities, Manifest, Outcome, Permissions, RunContext
from tether.config import OpenAIConfig
from tether.errors import TetherError
from tether.protocol.events import AgentDelta, AgentMessage, AgentStatus, AgentStep, AgentUsage
from tether.protocol.runners import ToolInfo

__all__ = ["OpenAIAgent", "trim"]

Message = dict[str, Any]


class ModelError(Exception):
    """A model call failed for good; ``reason`` is a short stable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class OpenAIAgent:
    def __init__(self, config: OpenAIConfig) -> None:
        if not config.model:
            raise ValueError("[agents.openai] model is not set")
        self.config = config
        self.name = "openai"
        self.capabilities = Capabilities(streaming=True, steering=True, resume=True)
        self.manifest = Manifest(
            id="openai",
            version=__version__,
            label=f"OpenAI-compatible model ({config.model})",
            description="A tool-calling loop on any OpenAI-compatible Chat Completions endpoint.",
            capabilities=self.capabilities,
            permissions=Permissions(
                tools=["*"], network=[config.base_url or "https://api.openai.com/v1"]
            ),
        )
        self._client: Any = None

    def client(self) -> Any:
        """The SDK client, made on first use (the SDK is imported only then)."""
        if self._client is None:
            import openai

            key = os.environ.get(self.config.api_key_env) or "none"
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.config.base_url,
                timeout=self.config.request_timeout,
                max_retries=self.config.max_retries,
            )
        return self._client

    async def run(self, ctx: RunContext) -> Outcome:
        tools = [_function(t) for t in await ctx.tools()]
        messages: list[Message] = [
            {"role": "system", "content": self.config.system_prompt},
            {"role": "user", "content": ctx.input},
        ]
        budget = _Budget(self.config.context_tokens)
        done = 0
        if ctx.resumed:  # the transcript so far, from the steps recorded before the restart
            for event in await ctx.history():
                if event.kind == AgentStep.KIND and isinstance(event.payload, dict):
                    memo = event.payload.get("memo")
                    if isinstance(memo, list):
                        messages += [m for m in memo if isinstance(m, dict)]
                        done = max(done, int(event.payload.get("step") or 0))
        for round_no in range(done + 1, self.config.max_rounds + 1):
            if ctx.cancelled.is_set():
                return Outcome(state="failed", reason="cancelled")
            start = len(messages)
            messages += [{"role": "user", "content": t} for t in ctx.take_steering()]
            sent = trim(messages, budget.chars())
            try:
                reply, used = await self._complete(ctx, sent, tools)
            except ModelError as exc:
                await ctx.emit(AgentMessage(text=str(exc)))
                return Outcome(state="failed", reason=exc.reason, output=str(exc))
            budget.observe(sum(_size(m) for m in sent) + len(json.dumps(tools)), used)
            calls = reply.get("tool_calls") or []
            if not calls:
                text = reply.get("content") or ""
                await ctx.emit(AgentMessage(text=text))
                return Outcome(state="succeeded", output=text)
            messages.append(reply)
            for call in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "content": await self._run_tool(ctx, call["function"]),
                    }
                )
            # what this round added: enough to go on from here after a restart
            await ctx.emit(AgentStep(step=round_no, memo=messages[start:]))
        text = f"stopped after {self.config.max_rounds} model calls without a final answer"
        await ctx.emit(AgentMessage(text=text))
        return Outcome(state="failed", reason="max_rounds", output=text)

    async def _run_tool(self, ctx: RunContext, function: dict[str, Any]) -> str:
        name = function.get("name") or ""
        try:
            args = json.loads(function.get("arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as exc:
            return (
                f"error: the call to {name} did not run: its arguments are not valid JSON ({exc})"
            )
        await ctx.emit(AgentStatus(text=f"calling {name}"))
        try:
            result = await ctx.call_tool(runner="", tool=name, args=args)
        except TetherError as exc:
            return f"error ({exc.code}): {exc.message}"
        text = json.dumps(result, ensure_ascii=False)
        cap = self.config.tool_result_chars
        if len(text) > cap:
            text = text[:cap] + f"\n[cut: {len(text) - cap} more characters not shown]"
        return text

    async def _complete(
        self, ctx: RunContext, messages: list[Message], tools: list[dict[str, Any]]
    ) -> tuple[Message, int | None]:
        """One streamed model call: the assembled reply and the prompt tokens the server
        reported (None: it did not say). The SDK retries what fails before the stream
        starts (429, 5xx, timeouts, refused connections); a stream that breaks half-way
        is retried here; each at most ``max_retries`` times."""
        import openai

        where = self.config.base_url or "api.openai.com"
        tries = self.config.max_retries + 1
        for attempt in range(tries):
            try:
                return await self._stream(ctx, messages, tools)
            except openai.APIStatusError as exc:
                raise _status_error(exc, self.config) from exc
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise ModelError(
                    "model_unreachable",
                    f"the model server at {where} did not answer ({type(exc).__name__}) "
                    f"after {tries} tries",
                ) from exc
            except _Broken as exc:
                if attempt == self.config.max_retries:
                    raise ModelError(
                        "model_unreachable",
                        f"the model server at {where} broke off its answer {tries} times",
                    ) from exc
                await ctx.emit(
                    AgentStatus(text=f"the model call broke off; retrying ({attempt + 1})")
                )
        raise AssertionError("unreachable")

    async def _stream(
        self, ctx: RunContext, messages: list[Message], tools: list[dict[str, Any]]
    ) -> tuple[Message, int | None]:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            kwargs["tools"] = tools
        stream = await self.client().chat.completions.create(**kwargs)
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finished = False
        prompt_tokens: int | None = None
        index = 0
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    u = chunk.usage
                    prompt_tokens = u.prompt_tokens
                    details = getattr(u, "prompt_tokens_details", None)
                    await ctx.emit(
                        AgentUsage(
                            model=chunk.model or self.config.model,
                            input_tokens=u.prompt_tokens,
                            output_tokens=u.completion_tokens,
                            cached_tokens=getattr(details, "cached_tokens", None),
                        )
                    )
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        await ctx.emit(AgentDelta(text=delta.content, index=index))
                        index += 1
                    for tc in delta.tool_calls or []:
                        slot = calls.setdefault(
                            tc.index,
                            {
                                "id": "",
                                "type": "function",
                                "function": {"name": "", "arguments": ""},
                            },
                        )
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function is not None:
                            slot["function"]["name"] += tc.function.name or ""
                            slot["function"]["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason is not None:
                        finished = True
        except openai.APIError:
            raise
        except Exception as exc:
            raise _Broken(repr(exc)) from exc
        if not finished:
            raise _Broken("the stream ended before the model finished")
        reply: Message = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            reply["tool_calls"] = [calls[i] for i in sorted(calls)]
        return reply, prompt_tokens


class _Budget:
    """How many characters of conversation fit the model's context: tokens are estimated
    as characters / 4 until the server's reported usage gives the real ratio."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.chars_per_token = 4.0

    def chars(self) -> int:
        return int(self.tokens * self.chars_per_token)

    def observe(self, chars: int, prompt_tokens: int | None) -> None:
        if prompt_tokens and prompt_tokens > 0 and chars > 0:
            seen = chars / prompt_tokens
            # smoothed, and never more optimistic than 8 characters a token
            self.chars_per_token = min(8.0, 0.5 * self.chars_per_token + 0.5 * seen)


class _Broken(Exception):
    """The stream stopped half-way."""


def _status_error(exc: Any, config: OpenAIConfig) -> ModelError:
    code = getattr(exc, "status_code", 0)
    where = config.base_url or "api.openai.com"
    if code == 401:
        return ModelError(
            "model_unauthorized",
            f"the model server at {where} refused the API key (401); set "
            f"{config.api_key_env} to a valid key",
        )
    if code == 404:
        return ModelError(
            "model_not_found", f"the model server at {where} has no model {config.model!r} (404)"
        )
    if code == 429:
        return ModelError(
            "model_rate_limited",
            f"the model server at {where} kept saying slow down (429) after "
            f"{config.max_retries + 1} tries; try again later",
        )
    return ModelError("model_error", f"the model server at {where} failed: HTTP {code}")


def _function(tool: ToolInfo) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": f"{tool.summary} (risk: {tool.risk})",
            "parameters": tool.params_schema,
        },
    }


def _size(message: Message) -> int:
    return len(json.dumps(message, ensure_ascii=False))


def trim(messages: list[Message], budget: int) -> list[Message]:
    """The conversation cut to about ``budget`` characters: the system prompt and the
    first user message stay; the oldest tool results are shortened first, then the oldest
    exchanges are dropped whole (an assistant turn with the tool results that answer it)."""
    total = sum(_size(m) for m in messages)
    if total <= budget:
        return messages
    out = [dict(m) for m in messages]
    for m in out[2:]:
        if total <= budget:
            return out
        if m.get("role") == "tool" and len(m.get("content") or "") > 200:
            before = _size(m)
            m["content"] = m["content"][:200] + " [older result cut to fit the model's context]"
            total -= before - _size(m)
    head, rest = out[:2], out[2:]
    while rest and total > budget:
        dropped = rest.pop(0)
        total -= _size(dropped)
        while rest and rest[0].get("role") == "tool":  # the results of a dropped turn
            total -= _size(rest.pop(0))
    return head + rest
