"""What an ACP agent's tool calls stand for in tether's terms (no SDK, no I/O).

:func:`describe` turns a tool call's fields (``kind``, ``rawInput``, ``locations``, diffs
in ``content``), merged over its updates, into the tether tool and arguments policy
judges: ``shell`` with the command line that would run, ``apply_patch`` with every path
it touches and the diff, or ``agent_action`` for anything else. Never from its title:
that is the agent's own words for it.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from typing import Any

from tether.runner.agents.codex import strip_shell

__all__ = ["AgentCall", "Paths", "describe", "diff_contents", "text_of"]

_EDIT_KINDS = ("edit", "delete", "move")


@dataclass
class AgentCall:
    """One of the agent's tool calls, as far as we know it."""

    tool: str = "agent_action"
    args: dict[str, Any] = field(default_factory=dict)
    contents: dict[str, str] = field(default_factory=dict)
    """Path -> the new content the agent showed for it (its diff), when it showed one."""
    seen: dict[str, Any] = field(default_factory=dict)
    """Its fields as the agent's updates gave them, merged."""
    asked: bool = False
    granted: bool = False
    declined: bool = False
    announced: bool = False
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Paths:
    """The workspace as the agent sees it: paths in it become workspace-relative."""

    root: str

    def rel(self, path: str) -> str:
        root = self.root.rstrip("/")
        if path == root:
            return "."
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
        return path


def describe(data: dict[str, Any], paths: Paths) -> tuple[str, dict[str, Any]]:
    """The tether tool and arguments a tool call stands for (see the module docstring)."""
    kind = data.get("kind") or ""
    raw = data.get("rawInput")
    raw = raw if isinstance(raw, dict) else {}
    if kind == "execute" or "command" in raw:
        command = _command_of(raw.get("command") or raw.get("cmd"))
        cwd = raw.get("cwd") or raw.get("workdir") or paths.root
        return "shell", {"command": command, "cwd": paths.rel(str(cwd))}
    if kind in _EDIT_KINDS:
        found: list[str] = []
        for location in data.get("locations") or []:
            if isinstance(location, dict) and location.get("path"):
                found.append(paths.rel(str(location["path"])))
        for name in ("file_path", "filePath", "path", "absolute_path"):
            if isinstance(raw.get(name), str):
                found.append(paths.rel(raw[name]))
        diffs = []
        for item in _diffs(data):
            path = paths.rel(str(item.get("path") or ""))
            found.append(path)
            diffs.append(_unified(path, item.get("oldText"), str(item.get("newText") or "")))
        return "apply_patch", {
            "paths": list(dict.fromkeys(p for p in found if p)),
            "diff": "\n".join(diffs)[:100_000],
        }
    return "agent_action", {
        "kind": str(kind or "other"),
        "title": str(data.get("title") or "")[:500],
        "input": raw,
    }


def diff_contents(data: dict[str, Any], paths: Paths) -> dict[str, str]:
    """Path -> the new content each diff in the tool call shows."""
    return {
        paths.rel(str(item.get("path") or "")): str(item.get("newText") or "")
        for item in _diffs(data)
    }


def _diffs(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        item
        for item in data.get("content") or []
        if isinstance(item, dict) and item.get("type") == "diff"
    ]


def _command_of(value: Any) -> str:
    if isinstance(value, list):
        return strip_shell(shlex.join(str(v) for v in value))
    return strip_shell(str(value)) if isinstance(value, str) else ""


def _unified(path: str, old: Any, new: str) -> str:
    before = (old if isinstance(old, str) else "").splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(before, new.splitlines(keepends=True), f"a/{path}", f"b/{path}")
    )


def text_of(value: Any) -> str:
    """The text in a tool call's ``content`` or ``rawOutput``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(text_of(v) for v in value)
    if isinstance(value, dict):
        for key in ("text", "output", "stdout", "content"):
            if key in value:
                return text_of(value[key])
    return ""
