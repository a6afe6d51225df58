"""What a runner may record about a hosted turn: attacks by a hostile runner or agent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from tether.config import RunsConfig
from tether.gateway.hosted import HostedService, _call_for
from tether.protocol.events import ToolCallDecided, ToolCallRequested
from tether.protocol.hosted import AgentEventNote, AgentPermissionParams


def service() -> HostedService:
    none: Any = None
    return HostedService(
        ledger=none, registry=none, link=none, tools=none, gate=none, issuer=none,
        config=RunsConfig(),
    )  # fmt: skip


def drive(runner_id: str = "rnr_1") -> Any:
    live = SimpleNamespace(name="box", runner_id=runner_id)
    return SimpleNamespace(live=live, workspace="app", queue=asyncio.Queue(), overflowed=False)


def note(kind: str, payload: dict[str, Any], n: int = 1) -> AgentEventNote:
    return AgentEventNote(run_id="run_1", n=n, kind=kind, payload=payload)


def test_a_runner_cannot_record_a_runs_end_a_decision_by_a_person_or_a_request() -> None:
    hosted = service()
    for kind, payload in [
        ("run.succeeded", {"output": "forged"}),
        ("approval.resolved", {"request": "r", "handle": "h", "decision": "allow_once",
                               "by": "alice", "at": 1.0}),
        ("question.answered", {"request": "r", "handle": "h", "decision": "answer", "by": "a",
                               "at": 1.0}),
        ("steering.received", {"text": "rm -rf /"}),
    ]:  # fmt: skip
        assert hosted._checked(drive(), note(kind, payload)) is None, kind


def test_an_invalid_payload_is_not_recorded() -> None:
    assert service()._checked(drive(), note("agent.message", {"text": 5})) is None
    assert service()._checked(drive(), note("agent.message", {"oops": "x"})) is None


def test_a_decision_the_runner_reports_is_only_ever_its_sandboxs() -> None:
    event = service()._checked(
        drive(),
        note(
            "tool.call.decided",
            {"call_id": "c", "decision": "allow", "by": "alice", "rule": "alice said so"},
        ),
    )
    assert isinstance(event, ToolCallDecided)
    assert event.by == "agent_sandbox"


def test_a_call_is_recorded_on_the_drives_runner_and_workspace_whatever_it_claims() -> None:
    event = service()._checked(
        drive(),
        note(
            "tool.call.requested",
            {"call_id": "c", "runner": "prod", "tool": "shell", "args": {}, "workspace": "etc"},
        ),
    )
    assert isinstance(event, ToolCallRequested)
    assert (event.runner, event.workspace) == ("box", "app")


def test_events_from_another_runner_are_dropped() -> None:
    hosted = service()
    d = drive("rnr_1")
    hosted.drives["run_1"] = d
    hosted.on_event(SimpleNamespace(runner_id="rnr_2"), note("agent.message", {"text": "x"}))  # type: ignore[arg-type]
    assert d.queue.empty()
    hosted.on_event(SimpleNamespace(runner_id="rnr_1"), note("agent.message", {"text": "x"}))  # type: ignore[arg-type]
    assert d.queue.qsize() == 1


def test_a_flood_of_events_is_capped_and_replayed_later() -> None:
    hosted = service()
    d = drive()
    hosted.drives["run_1"] = d
    peer: Any = SimpleNamespace(runner_id="rnr_1")
    for n in range(1, 10_005):
        hosted.on_event(peer, note("agent.delta", {"text": "x"}, n))
    assert d.queue.qsize() == 10_000
    assert d.overflowed  # the drive attaches again and the runner replays what was dropped


def test_how_policy_sees_each_kind_of_permission() -> None:
    def params(kind: str, **kw: Any) -> AgentPermissionParams:
        return AgentPermissionParams(
            request_key="k" * 8, run_id="run_1", kind=kind, call_id="c", **kw
        )  # type: ignore[arg-type]

    command = _call_for(params("command", args={"command": "rm -rf build", "cwd": "."}), "app")
    assert (command.tool, command.risk, command.command) == ("shell", "exec", "rm -rf build")
    change = _call_for(params("file_change", args={"paths": ["src/../a.py", 3]}), "app")
    assert (change.tool, change.risk, change.paths) == ("apply_patch", "write", ("a.py",))
    wider = _call_for(params("permissions", args={"permissions": {"network": {}}}), "app")
    assert (wider.tool, wider.risk) == ("agent_permissions", "exec")


async def test_a_runner_cannot_run_tool_calls_in_another_runners_run() -> None:
    """``agent.tool`` for a run this runner does not host is refused: nothing is decided,
    minted or sent (the service's ledger and tools are absent: touching them would fail)."""
    from tether.protocol.hosted import AgentToolParams

    hosted = service()
    cancelled = asyncio.Event()
    d = drive("rnr_1")
    d.task = SimpleNamespace(cancelled=cancelled, run_id="run_1")
    hosted.drives["run_1"] = d
    ask = AgentToolParams(
        request_key="k", run_id="run_1", call_id="op1", tool="write_file",
        args={"path": "a", "content": "x"},
    )  # fmt: skip
    answer = await hosted.tool("rnr_2", ask)
    assert (answer.ok, answer.code) == (False, "not_found")
    cancelled.set()
    answer = await hosted.tool("rnr_1", ask)
    assert (answer.ok, answer.code) == (False, "cancelled")
