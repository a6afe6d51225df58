"""The operator agent: what each input becomes, and how results read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tether.agents.contract import Outcome, PastEvent, SessionSettings
from tether.agents.operator import HELP, MAX_SHOWN, OperatorAgent, render
from tether.errors import ApprovalDenied
from tether.protocol.events import AgentMessage, RunEvent


class Ctx:
    """A RunContext that records tool calls and answers them from a table."""

    def __init__(self, text: str, answer: Any = None, error: Exception | None = None) -> None:
        self.input = text
        self.answer = answer
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.said: list[str] = []
        self.settings = SessionSettings(
            agent="operator", runner="r", workspace="app", mode="auto-read"
        )
        self.run_id, self.session_id, self.attempt, self.resumed = "run_1", "ses_1", 1, False
        self.cancelled = asyncio.Event()

    async def emit(self, event: RunEvent) -> int:
        assert isinstance(event, AgentMessage)
        self.said.append(event.text)
        return len(self.said)

    async def set_waiting(self, waiting: bool, reason: str = "") -> None:
        raise AssertionError("the operator never waits by itself")

    def take_steering(self) -> list[str]:
        return []

    async def history(self) -> Sequence[PastEvent]:
        return []

    async def call_tool(self, *, runner: str, tool: str, args: dict[str, Any], **kw: Any) -> Any:
        assert runner == ""  # the session's runner
        self.calls.append((tool, args))
        if self.error is not None:
            raise self.error
        return self.answer

    async def ask(
        self, question: str, choices: Sequence[str] = (), timeout: float | None = None
    ) -> str:
        raise AssertionError("the operator asks nothing")


async def run(text: str, **kw: Any) -> tuple[Outcome, Ctx]:
    ctx = Ctx(text, **kw)
    return await OperatorAgent().run(ctx), ctx  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("!git status", ("shell", {"command": "git status"})),
        ("  !ls -la | wc -l  ", ("shell", {"command": "ls -la | wc -l"})),
        (
            "!for f in *; do\n  echo $f\ndone",
            ("shell", {"command": "for f in *; do\n  echo $f\ndone"}),
        ),
        ("/read src/app.py", ("read_file", {"path": "src/app.py"})),
        ("/ls", ("list_dir", {"path": "."})),
        ("/ls docs", ("list_dir", {"path": "docs"})),
        (
            "/write notes.md\n# Notes\nline two",
            ("write_file", {"path": "notes.md", "content": "# Notes\nline two"}),
        ),
        ("/write empty.txt", ("write_file", {"path": "empty.txt", "content": ""})),
    ],
)
async def test_each_input_is_one_tool_call(text: str, call: tuple[str, dict[str, Any]]) -> None:
    outcome, ctx = await run(text, answer={})
    assert ctx.calls == [call]
    assert outcome.state == "succeeded"


@pytest.mark.parametrize("text", ["", "help", "/help", "?"])
async def test_help(text: str) -> None:
    outcome, ctx = await run(text)
    assert (outcome.state, outcome.output, ctx.calls) == ("succeeded", HELP, [])


@pytest.mark.parametrize("text", ["!", "/read", "/write", "rm -rf /", "hello there"])
async def test_what_it_does_not_know_runs_nothing(text: str) -> None:
    outcome, ctx = await run(text)
    assert (outcome.state, outcome.reason, ctx.calls) == ("failed", "bad_command", [])


async def test_a_refused_call_is_said_plainly() -> None:
    error = ApprovalDenied("denied by usr_x (request ab12); the call did not run")
    outcome, ctx = await run("!make deploy", error=error)
    assert (outcome.state, outcome.reason) == ("failed", "approval_denied")
    assert ctx.said == ["denied by usr_x (request ab12); the call did not run"]


def test_results_read_as_text() -> None:
    assert render("shell", {"exit_code": 0, "output": "a\nb\n"}) == "a\nb\n[exit 0]"
    assert (
        render("shell", {"exit_code": 124, "output": "x", "timed_out": True})
        == "x\n[exit 124, timed out]"
    )
    assert render("shell", {"exit_code": 1, "output": ""}) == "[exit 1]"
    assert render("read_file", {"path": "a", "content": "hi\n"}) == "hi\n"
    assert "binary file of 9 bytes" in render("read_file", {"path": "b", "binary": True, "size": 9})
    listing = {"entries": [{"name": "src", "type": "dir"}, {"name": "a.py", "type": "file"}]}
    assert render("list_dir", listing) == "src/\na.py"
    assert render("list_dir", {"entries": []}) == "(empty)"
    assert (
        render("write_file", {"path": "n", "bytes_written": 3, "created": True})
        == "created n (3 bytes)"
    )
    long = render("read_file", {"content": "x" * (MAX_SHOWN + 5)})
    assert long.endswith("[… 5 more characters in the run's events]")
