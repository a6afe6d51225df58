"""A hosted agent's file write or command is decided by the permission it carries out
only when it is exactly that: a runner cannot stretch one grant to other paths or
commands by naming it."""

from __future__ import annotations

from typing import Any

from tether.gateway.call_gate import Verdict
from tether.gateway.hosted import _covered, _Drive
from tether.protocol.hosted import AgentPermissionParams, AgentToolParams


def _drive() -> _Drive:
    drive = _Drive(task=None, agent="gemini", live=None, workspace="app", recorded=0)  # type: ignore[arg-type]
    grant = Verdict(by="usr_ann", rule="allow_once by usr_ann (request ab12)", request_id="req_1")
    edit = AgentPermissionParams(
        request_key="k1", run_id="run_1", kind="file_change", call_id="call_e",
        tool="apply_patch", args={"paths": ["notes/a.txt"]},
    )  # fmt: skip
    command = AgentPermissionParams(
        request_key="k2", run_id="run_1", kind="command", call_id="call_c",
        tool="shell", args={"command": "make test", "cwd": "."},
    )  # fmt: skip
    drive.granted = {"call_e": (edit, grant), "call_c": (command, grant)}
    return drive


def _tool(tool: str, args: dict[str, Any], covers: str | None) -> AgentToolParams:
    return AgentToolParams(
        request_key="k", run_id="run_1", call_id="op1", tool=tool,  # type: ignore[arg-type]
        args=args, covers=covers,
    )  # fmt: skip


def test_a_write_of_the_granted_path_is_decided_by_the_grant() -> None:
    verdict = _covered(_drive(), _tool("write_file", {"path": "./notes/a.txt"}, "call_e"))
    assert verdict is not None
    assert (verdict.by, verdict.request_id) == ("usr_ann", "req_1")
    assert verdict.rule.startswith("carries out call call_e")


def test_a_grant_does_not_stretch_to_other_paths_commands_or_kinds() -> None:
    drive = _drive()
    assert _covered(drive, _tool("write_file", {"path": "notes/b.txt"}, "call_e")) is None
    assert _covered(drive, _tool("write_file", {"path": "../notes/a.txt"}, "call_e")) is None
    assert _covered(drive, _tool("shell", {"command": "make test; rm -rf ~"}, "call_c")) is None
    assert _covered(drive, _tool("shell", {"command": "make test"}, "call_e")) is None
    assert _covered(drive, _tool("write_file", {"path": "notes/a.txt"}, "call_c")) is None
    assert _covered(drive, _tool("read_file", {"path": "notes/a.txt"}, "call_e")) is None
    assert _covered(drive, _tool("write_file", {"path": "notes/a.txt"}, "call_zz")) is None
    assert _covered(drive, _tool("shell", {"command": "make test"}, "call_c")) is not None
