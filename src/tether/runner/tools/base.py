"""The tool contract: what a tool is, what it gets when it runs, and shared helpers.

A :class:`ToolSpec` names a tool, its typed params (a msgspec Struct), its risk class
and which params are paths; the daemon decodes params with :meth:`ToolSpec.parse`,
checks the capability token, then awaits ``spec.run(ctx, params)``. A tool reports
failure only through :mod:`tether.errors`: ``ToolFailed`` (with a stable
``data["reason"]``), ``ToolTimeout`` or ``PolicyDenied``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec

from tether.config import RunnerConfig
from tether.errors import InvalidParams, ToolFailed, ToolTimeout
from tether.runner.fs import WorkspaceFS
from tether.runner.sandbox import SandboxInfo

__all__ = [
    "Deadline",
    "FileLink",
    "Progress",
    "Risk",
    "ToolContext",
    "ToolSpec",
    "display_path",
    "failed",
    "run_blocking",
]

Risk = Literal["read", "write", "exec"]
Progress = Callable[[str, str], None]
"""Called with ``(stream, text)`` as output arrives; ``stream`` is ``stdout`` or ``stderr``."""


class FileLink(Protocol):
    """How a call moves file bytes to or from the gateway (``put_file``, ``get_file``)."""

    async def pull(self, call_id: str, offset: int, limit: int) -> tuple[bytes, bool]:
        """The call's file from ``offset``: ``(data, eof)``."""
        ...

    async def push(self, call_id: str, offset: int, data: bytes) -> None:
        """Hand the gateway the call's file from ``offset``."""
        ...


P = TypeVar("P", bound=msgspec.Struct)
T = TypeVar("T")


@dataclass
class ToolContext:
    """Everything a tool needs for one call."""

    fs: WorkspaceFS
    config: RunnerConfig
    timeout: float
    """Hard ceiling in seconds for this call (the shell may choose less)."""
    progress: Progress | None = None
    sandbox: SandboxInfo | None = None
    home: Path = field(default_factory=Path.home)
    """The runner user's home: hidden behind a private one inside the sandbox."""
    call_id: str | None = None
    """Tags the processes a call starts, so its orphans can be found."""
    files: FileLink | None = None
    """The gateway's side of file transfers (None: this runner cannot move files)."""

    def deadline(self) -> Deadline:
        """A fresh :class:`Deadline` of ``timeout`` seconds."""
        return Deadline(self.timeout)


@dataclass(frozen=True, eq=False)
class ToolSpec(Generic[P]):
    """One tool: its name, params type, risk class, path params and implementation."""

    name: str
    summary: str
    params: type[P]
    result: type[msgspec.Struct]
    risk: Risk
    path_params: tuple[str, ...]
    """Names of params that are paths (each goes through the path policy)."""
    run: Callable[[ToolContext, P], Awaitable[msgspec.Struct]]

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the params, with the top-level definition inlined."""
        return _inline(msgspec.json.schema(self.params))

    def parse(self, data: Any) -> P:
        """Validate decoded JSON params into :attr:`params`; raise ``InvalidParams``."""
        try:
            return msgspec.convert(data, self.params)
        except msgspec.ValidationError as exc:
            raise InvalidParams(f"{self.name}: {exc}", data={"tool": self.name}) from exc


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    defs = dict(schema.get("$defs", {}))
    out = dict(defs.pop(ref.removeprefix("#/$defs/")))
    if defs:
        out["$defs"] = defs
    return out


class Deadline:
    """A cooperative deadline and cancel flag for work done in a worker thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raise ``ToolTimeout`` past the deadline, ``CancelledError`` once cancelled."""
        if self._cancelled.is_set():
            raise asyncio.CancelledError
        if time.monotonic() > self._end:
            raise ToolTimeout(
                f"tool ran past its {self.seconds:g} s deadline", data={"timeout": self.seconds}
            )


async def run_blocking(deadline: Deadline, fn: Callable[[], T]) -> T:
    """Run blocking ``fn`` in a thread; on cancel, flag ``deadline`` so ``fn`` stops early."""
    try:
        return await asyncio.to_thread(fn)
    except asyncio.CancelledError:
        deadline.cancel()
        raise


def failed(message: str, reason: str, path: str | None = None, **extra: Any) -> ToolFailed:
    """A ``ToolFailed`` with ``data={"reason": reason, "path": path, **extra}``."""
    data: dict[str, Any] = {"reason": reason, **extra}
    if path is not None:
        data["path"] = path
    return ToolFailed(message, data=data)


def display_path(path: str) -> str:
    """``path`` made safe to encode as JSON (undecodable bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
