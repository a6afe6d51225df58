"""Tool contexts for unit tests: a workspace, its protected paths, and the call's file view."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.config import RunnerConfig
from tether.runner.fs import WorkspaceFS
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import SandboxInfo
from tether.runner.tools.base import Progress, ToolContext


def workspace_fs(
    ws: Path,
    *,
    protected: Sequence[Path | str] = (),
    allowed: Sequence[str] | None = None,
    allow_hardlinks: bool = False,
) -> WorkspaceFS:
    """A :class:`WorkspaceFS` on ``ws`` with ``protected`` paths (absolute)."""
    guard = ProtectedPaths((str(p), str(p)) for p in protected)
    return WorkspaceFS(ws, protected=guard, allowed=allowed, allow_hardlinks=allow_hardlinks)


def tool_context(
    ws: Path,
    *,
    protected: Sequence[Path | str] = (),
    allowed: Sequence[str] | None = None,
    sandbox_info: SandboxInfo | None = None,
    progress: Progress | None = None,
    timeout: float = 10.0,
    home: Path | None = None,
    **config: Any,
) -> ToolContext:
    """A :class:`ToolContext` for one call in ``ws``."""
    cfg = RunnerConfig(**config)
    fs = workspace_fs(ws, protected=protected, allowed=allowed, allow_hardlinks=cfg.allow_hardlinks)
    return ToolContext(
        fs=fs,
        config=cfg,
        timeout=timeout,
        progress=progress,
        sandbox=sandbox_info,
        home=home or ws.parent / "home",
        call_id="call_test",
    )
