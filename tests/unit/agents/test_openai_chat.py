"""The openai agent's history budget: what is kept when the conversation grows."""

from __future__ import annotations

import itertools
import json

import pytest

from tether.agents.openai_chat import OpenAIAgent, _Budget, trim
from tether.config import OpenAIConfig


def conversation(turns: int, result: int = 2000) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "the task"},
    ]
    for i in range(turns):
        call = {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "read_file", "arguments": "{}"},
        }
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        out.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * result})
    return out


def size(messages: list[dict[str, object]]) -> int:
    return sum(len(json.dumps(m)) for m in messages)


def test_within_budget_nothing_changes() -> None:
    messages = conversation(3)
    assert trim(messages, 10**6) is messages


def test_old_results_are_cut_first_then_old_turns_dropped() -> None:
    messages = conversation(20)
    cut = trim(messages, 12_000)
    assert size(cut) <= 12_000
    assert cut[:2] == messages[:2]  # the system prompt and the task stay
    assert cut[-1] == messages[-1]  # the newest result stays whole
    assert "older result cut" in str(cut[3]["content"])
    tiny = trim(messages, 1500)
    assert tiny[:2] == messages[:2]
    # no tool result is left without the assistant turn that asked for it
    for prev, m in itertools.pairwise(tiny):
        if m["role"] == "tool":
            assert prev["role"] in ("assistant", "tool")


def test_the_agent_needs_a_model() -> None:
    with pytest.raises(ValueError, match="model"):
        OpenAIAgent(OpenAIConfig())
    agent = OpenAIAgent(OpenAIConfig(model="m", base_url="http://127.0.0.1:9/v1"))
    assert agent.manifest.permissions.network == ["http://127.0.0.1:9/v1"]
    assert agent.capabilities.streaming


def test_the_budget_learns_the_real_ratio_from_usage() -> None:
    budget = _Budget(1000)
    assert budget.chars() == 4000  # four characters a token until told otherwise
    budget.observe(chars=3000, prompt_tokens=1000)  # this model: three a token
    assert budget.chars() == 3500
    budget.observe(chars=3000, prompt_tokens=1000)
    assert budget.chars() == 3250
    budget.observe(chars=3000, prompt_tokens=None)  # no usage: the estimate stays
    assert budget.chars() == 3250
    budget.observe(chars=100_000, prompt_tokens=1)  # nonsense cannot make it optimistic
    assert budget.chars() <= 8000


class _Ctx:
    """Just what ``_run_tool`` touches: status events and one tool call."""

    def __init__(self, result: object) -> None:
        self.result = result
        self.calls: list[tuple[str, dict[str, object]]] = []

    async def emit(self, event: object) -> int:
        return 1

    async def call_tool(self, *, runner: str, tool: str, args: dict[str, object]) -> object:
        self.calls.append((tool, args))
        return self.result


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"a string"'])
async def test_a_model_sending_bad_arguments_runs_nothing(arguments: str) -> None:
    agent = OpenAIAgent(OpenAIConfig(model="m"))
    ctx = _Ctx({})
    said = await agent._run_tool(ctx, {"name": "shell", "arguments": arguments})  # type: ignore[arg-type]
    assert said.startswith("error: the call to shell did not run")
    assert ctx.calls == []


async def test_a_huge_tool_result_reaches_the_model_cut() -> None:
    agent = OpenAIAgent(OpenAIConfig(model="m", tool_result_chars=100))
    ctx = _Ctx({"output": "x" * 10_000})
    said = await agent._run_tool(ctx, {"name": "read_file", "arguments": '{"path": "a"}'})  # type: ignore[arg-type]
    assert len(said) < 200
    assert "more characters not shown" in said
    assert ctx.calls == [("read_file", {"path": "a"})]
