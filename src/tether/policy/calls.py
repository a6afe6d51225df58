"""A tool call as policy sees it: tool, risk class, workspace, paths and shell commands."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tether.policy.shell import SimpleCommand, parse_shell

__all__ = ["Call", "describe_call", "normalize_path"]

RISKS = ("read", "write", "exec")


@dataclass(frozen=True, slots=True)
class Call:
    tool: str
    risk: str
    """``read``, ``write`` or ``exec`` (a tool of unknown risk counts as ``exec``)."""
    workspace: str
    paths: tuple[str, ...] = ()
    """The call's path arguments, workspace-relative and normalised."""
    command: str | None = None
    """The command line of a shell call."""
    commands: tuple[SimpleCommand, ...] | None = None
    """Its simple commands; None when the line cannot be parsed."""


def normalize_path(path: str) -> str:
    """``./src//a/../b.py`` is ``src/b.py``; an empty path is ``.``."""
    if not path:
        return "."
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def describe_call(
    tool: str,
    args: Mapping[str, Any],
    *,
    workspace: str,
    risk: str | None,
    path_params: Iterable[str] = (),
) -> Call:
    """The :class:`Call` for ``tool`` with ``args`` (``risk`` as the runner advertises it)."""
    risk = risk if risk in RISKS else "exec"
    paths = []
    for name in path_params:
        value = args.get(name)
        if isinstance(value, str):
            paths.append(normalize_path(value))
        elif value is None:
            paths.append(".")
    command = args.get("command") if risk == "exec" else None
    if isinstance(command, str):
        parsed = parse_shell(command)
        return Call(
            tool=tool,
            risk=risk,
            workspace=workspace,
            paths=tuple(paths),
            command=command,
            commands=tuple(parsed) if parsed is not None else None,
        )
    return Call(tool=tool, risk=risk, workspace=workspace, paths=tuple(paths))
