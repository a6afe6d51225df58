"""The table of every tool the runner offers, and its description for the gateway."""

from __future__ import annotations

from typing import Any

from tether.runner.tools import files, noop, search, shell, transfer
from tether.runner.tools.base import ToolSpec

__all__ = ["TOOLS", "describe"]

_SPECS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="read_file",
        summary="Read a UTF-8 text file, up to `limit` lines from line `offset` (0-based).",
        params=files.ReadFileParams,
        result=files.ReadFileResult,
        risk="read",
        path_params=("path",),
        run=files.read_file,
    ),
    ToolSpec(
        name="write_file",
        summary="Create or overwrite a file with the given text, atomically.",
        params=files.WriteFileParams,
        result=files.WriteFileResult,
        risk="write",
        path_params=("path",),
        run=files.write_file,
    ),
    ToolSpec(
        name="edit_file",
        summary="Replace the single exact occurrence of `old` with `new` in a file.",
        params=files.EditFileParams,
        result=files.EditFileResult,
        risk="write",
        path_params=("path",),
        run=files.edit_file,
    ),
    ToolSpec(
        name="list_dir",
        summary="List a directory's entries (name, type, size), sorted by name.",
        params=files.ListDirParams,
        result=files.ListDirResult,
        risk="read",
        path_params=("path",),
        run=files.list_dir,
    ),
    ToolSpec(
        name="glob",
        summary="Find workspace paths matching a glob pattern such as `**/*.py`.",
        params=files.GlobParams,
        result=files.GlobResult,
        risk="read",
        path_params=("path",),
        run=files.glob,
    ),
    ToolSpec(
        name="grep",
        summary=(
            "Search file contents for a regular expression; returns matching lines. "
            "Skips binary files, symlinks and .git directories."
        ),
        params=search.GrepParams,
        result=search.GrepResult,
        risk="read",
        path_params=("path",),
        run=search.grep,
    ),
    ToolSpec(
        name="shell",
        summary=(
            "Run a bash command in the workspace; returns exit code and merged "
            "stdout/stderr. Sandboxed when bubblewrap is available."
        ),
        params=shell.ShellParams,
        result=shell.ShellResult,
        risk="exec",
        path_params=("cwd",),
        run=shell.shell,
    ),
    ToolSpec(
        name="put_file",
        summary=(
            "Write the file the gateway holds for this call (a chat attachment) into the "
            "workspace, checked against its size and SHA-256."
        ),
        params=transfer.PutFileParams,
        result=transfer.PutFileResult,
        risk="write",
        path_params=("path",),
        run=transfer.put_file,
    ),
    ToolSpec(
        name="get_file",
        summary="Hand a workspace file (at most `max_size` bytes) to the gateway (`/send`).",
        params=transfer.GetFileParams,
        result=transfer.GetFileResult,
        risk="read",
        path_params=("path",),
        run=transfer.get_file,
    ),
    ToolSpec(
        name="noop",
        summary="Do nothing and return `echo`: checks the tool-call path end to end.",
        params=noop.NoopParams,
        result=noop.NoopResult,
        risk="read",
        path_params=(),
        run=noop.noop,
    ),
]

TOOLS: dict[str, ToolSpec[Any]] = {spec.name: spec for spec in _SPECS}


def describe() -> list[dict[str, Any]]:
    """Name, summary, risk, params JSON schema and path params of every tool, as the
    gateway sees them."""
    return [
        {
            "name": spec.name,
            "summary": spec.summary,
            "risk": spec.risk,
            "params_schema": spec.json_schema(),
            "path_params": list(spec.path_params),
        }
        for spec in TOOLS.values()
    ]
