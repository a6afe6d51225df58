"""What `tether chat` shows for a session's events: the pure view, and `tether up`'s agent."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec
import pytest

from tether.cli.chat.view import FOLD_HEAD, FOLD_TAIL, View, clean, fold
from tether.cli.up_cmd import local_defaults
from tether.config import Config
from tether.protocol.events import CATALOGUE
from tether.protocol.runs import EventInfo

_seq = itertools.count(1)


def ev(kind: str, run: str = "run_1", **payload: Any) -> EventInfo:
    body = CATALOGUE[kind](**payload)
    return EventInfo(
        run_id=run,
        seq=next(_seq),
        kind=kind,
        source="gateway",
        created_at=time.time(),
        payload=msgspec.Raw(msgspec.json.encode(body)),
    )


def texts(view: View, *events: EventInfo) -> list[str]:
    return [shown.text for e in events for shown in view.feed(e)]


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("a\x1b]0;pwned\x07b", "ab"),  # retitle the terminal
        ("a\x1b]52;c;ZXZpbA==\x07b", "ab"),  # write the clipboard
        ("a\x1b[2J\x1b[Hb", "ab"),  # clear the screen, move the cursor
        ("a\x1b[31mb\x1b[0m", "ab"),
        ("a\x9b2Jb", "ab"),  # the one-byte CSI
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS
        ("ok\rFAKE approval", "okFAKE approval"),  # no overwriting a line
        ("x\u202eevil\u202c", "xevil"),  # bidirectional overrides
        ("tab\tand\nnewline", "tab\tand\nnewline"),
    ],
)
def test_control_characters_and_escapes_never_reach_the_terminal(hostile: str, shown: str) -> None:
    assert clean(hostile) == shown


def test_long_output_is_folded_with_its_head_tail_and_where_to_see_it() -> None:
    text = "\n".join(f"line {i}" for i in range(100))
    folded = fold(text, "tether runs events run_1").split("\n")
    assert folded[:FOLD_HEAD] == [f"line {i}" for i in range(FOLD_HEAD)]
    assert folded[-FOLD_TAIL:] == [f"line {i}" for i in range(100 - FOLD_TAIL, 100)]
    assert (
        folded[FOLD_HEAD]
        == f"… {100 - FOLD_HEAD - FOLD_TAIL} more lines (tether runs events run_1) …"
    )
    short = "\n".join(f"line {i}" for i in range(FOLD_HEAD + FOLD_TAIL + 1))
    assert fold(short, "x") == short


def test_a_run_with_an_approval_streams_waits_and_ends() -> None:
    view = View(names={"usr_a": "alice"})
    view.mine.add("!rm x")
    assert texts(view, ev("run.queued", input="!rm x", agent="operator")) == []  # typed here
    assert texts(view, ev("run.started", agent="operator", attempt=1)) == []
    assert view.active == "run_1"
    call = {"call_id": "c1", "runner": "box", "tool": "shell", "workspace": "app"}
    assert texts(view, ev("tool.call.requested", args={"command": "rm x"}, **call)) == [
        "⚙ shell rm x"
    ]
    asked = texts(
        view,
        ev(
            "approval.requested",
            request="req_1",
            handle="ab12",
            call_id="c1",
            tool="shell",
            runner="box",
            workspace="app",
            args={"command": "rm x\x1b[2J"},
            commands=["rm x\x1b[2J"],
            rule="exec asks",
            approvers=["usr_a"],
            expires_at=time.time() + 60,
        ),
    )
    assert asked[0].startswith("? approval ab12: shell `rm x` on box/app")
    assert "[a] allow once" in asked[0]
    assert view.first_waiting() is not None
    resolved = ev(
        "approval.resolved",
        request="req_1",
        handle="ab12",
        decision="allow_once",
        by="usr_a",
        at=1.0,
    )
    assert texts(view, resolved) == ["  ab12 allowed once by alice"]
    assert view.waiting == {}
    texts(view, ev("tool.call.output", call_id="c1", stream="stdout", text="removed\n"))
    assert "removed" in view.live()
    ended = texts(view, ev("tool.call.succeeded", call_id="c1", duration=0.25, result={}))
    assert ended == ["✓ shell (0.2 s)", "removed"]
    texts(view, ev("agent.delta", text="All "), ev("agent.delta", text="done"))
    assert view.live() == "All done"
    assert texts(view, ev("agent.message", text="All done")) == ["All done"]
    out = texts(view, ev("run.succeeded", output="All done"))
    assert len(out) == 1  # the reply is not said twice
    assert out[0].startswith("— done")
    assert (view.active, view.state, view.live()) == (None, "idle", "")


def test_input_said_elsewhere_is_shown_and_a_failure_in_words() -> None:
    view = View()
    shown = texts(view, ev("run.queued", run="run_2", input="hello\x1b[2J", agent="operator"))
    assert shown == ["› hello"]
    failed = texts(view, ev("run.failed", run="run_2", reason="runner_offline"))
    assert failed[0].startswith("— failed")
    assert "the runner is offline" in failed[0]


def test_a_question_ends_with_its_run_and_expired_requests_say_so() -> None:
    view = View()
    texts(
        view,
        ev(
            "question.asked",
            request="req_q",
            handle="qq11",
            question="Which branch?",
            choices=["main", "dev"],
            approvers=[],
            expires_at=time.time() + 60,
        ),
    )
    waiting = view.first_waiting()
    assert waiting is not None
    assert waiting.choices == ["main", "dev"]
    assert waiting.kind == "question"
    texts(view, ev("run.cancelled", reason="cancelled"))
    assert view.waiting == {}


def test_tether_up_uses_openai_when_a_model_is_configured_else_the_operator() -> None:
    plain = local_defaults(Config(), {"here": "/tmp"})
    assert plain.runs.default_agent == "operator"
    assert plain.runs.default_runner == "local"
    assert plain.runs.default_workspace == "here"
    model = msgspec.convert({"agents": {"openai": {"model": "m1"}}}, Config)
    assert local_defaults(model, None).runs.default_agent == "openai"
    chosen = msgspec.convert({"runs": {"default_agent": "codex"}}, Config)
    assert local_defaults(chosen, None).runs.default_agent == "codex"


def test_the_terminal_completes_every_command_the_gateway_answers() -> None:
    from tether.cli.chat.app import GATEWAY_COMMANDS
    from tether.gateway.chat_commands import COMMANDS

    assert set(GATEWAY_COMMANDS) == set(COMMANDS)
