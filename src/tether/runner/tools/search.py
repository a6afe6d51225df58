"""The grep tool: regex search over the workspace, with ripgrep or in pure Python.

Both engines search the same files and return the same matches, in the same order:
regular files under ``path`` (symlinks are never followed, ``.git`` directories and
protected paths are skipped, files with several hard links too unless allowed), minus
files with a NUL byte in their first 8 KiB; lines split on ``\\n``; ``glob`` matched
against the file name (or, when it contains ``/``, against the path relative to
``path``). The Python engine reads every file through the descriptor walk of
:mod:`tether.runner.fs`. ripgrep opens files by path, which a concurrent writer could
redirect, so it runs only inside the sandbox (the search root bound read-only by
descriptor, protected paths covered, the system's program directories and nothing
else), and every file it reports is re-checked through the descriptor walk; without
the sandbox the Python engine is used. The regex dialect is the engine's own (Rust
``regex`` or Python ``re``); simple patterns mean the same in both.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from tether.errors import TetherError, ToolFailed, ToolTimeout
from tether.runner.fs import WorkspaceFS
from tether.runner.process import run_process
from tether.runner.sandbox import TOOL_DIRS, Bind, SandboxSpec, command
from tether.runner.tools.base import Deadline, ToolContext, display_path, failed, run_blocking
from tether.runner.tools.files import BINARY_SNIFF
from tether.security.paths import Parts, compile_glob, glob_match, is_within, show_parts

__all__ = ["Engine", "GrepMatch", "GrepParams", "GrepResult", "grep", "search"]

Engine = Literal["ripgrep", "python"]
MAX_TEXT = 500
"""Longest line text returned, in characters."""
SKIP_NAMES = frozenset({".git"})
_SAFE_GLOB = re.compile(r"[\w.*?-]+")


class GrepParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Search file contents for a regular expression."""

    pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, description="Regex.")]
    path: Annotated[
        str, msgspec.Meta(min_length=1, max_length=4096, description="File or directory.")
    ] = "."
    glob: (
        Annotated[
            str,
            msgspec.Meta(min_length=1, max_length=1024, description="Only files matching this."),
        ]
        | None
    ) = None
    ignore_case: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


class GrepMatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    """Workspace-relative."""
    line: int
    """1-based."""
    text: str
    """The line, without its line ending, cut to 500 characters."""


class GrepResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    matches: list[GrepMatch]
    truncated: bool
    engine: Engine


class _Collector:
    """File filter and match list shared by both engines."""

    def __init__(
        self, fs: WorkspaceFS, base: Parts, base_is_dir: bool, glob: str | None, limit: int
    ) -> None:
        self.fs = fs
        self.base = base
        self.base_is_dir = base_is_dir
        self.limit = limit
        self.found: list[tuple[tuple[bytes, ...], GrepMatch]] = []
        self.full = asyncio.Event()
        """Set by the ripgrep engine once more than ``limit`` matches are known."""
        self._files: dict[str, Parts | None] = {}
        self._glob: Callable[[tuple[str, ...]], bool] = lambda rel: True
        if glob is not None:
            parts, _ = compile_glob(glob)
            whole = "/" in glob
            self._glob = lambda rel: glob_match(parts, rel if whole else rel[-1:])

    def wanted(self, parts: Parts) -> tuple[str, ...] | None:
        """Components below the base if ``parts`` is to be searched by name, else None."""
        if self.base_is_dir:
            if len(parts) <= len(self.base) or parts[: len(self.base)] != self.base:
                return None
            rel = parts[len(self.base) :]
            if SKIP_NAMES.intersection(rel):
                return None
        elif parts != self.base:
            return None
        else:
            rel = parts[-1:]
        return rel if self._glob(rel) else None

    def reported(self, path: str) -> Parts | None:
        """For a file ripgrep reports: its components if it passes every check, else None."""
        if path in self._files:
            return self._files[path]
        parts: Parts | None = None
        root = self.fs.root
        if is_within(path, root) and path != root:
            candidate = tuple(path[len(root) :].lstrip("/").split("/"))
            if self.wanted(candidate) is not None and _searchable(self.fs, candidate):
                parts = candidate
        self._files[path] = parts
        return parts

    def add(self, parts: Parts, line: int, raw: bytes) -> bool:
        """Record a match; return False once more than ``limit`` are known."""
        text = raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", "replace")
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        key = tuple(os.fsencode(c) for c in parts)
        self.found.append(
            (key, GrepMatch(path=display_path(show_parts(parts)), line=line, text=text))
        )
        return len(self.found) <= self.limit

    def result(self, engine: Engine) -> GrepResult:
        self.found.sort(key=lambda item: (item[0], item[1].line))
        matches = [m for _, m in self.found[: self.limit]]
        return GrepResult(matches=matches, truncated=len(self.found) > self.limit, engine=engine)


def _sniffed(fd: int) -> bool:
    """True if the open file has no NUL byte in its first 8 KiB (the file is searched)."""
    return b"\0" not in os.pread(fd, BINARY_SNIFF, 0)


def _searchable(fs: WorkspaceFS, parts: Parts) -> bool:
    """A regular, readable, unprotected file (not a symlink) that is not binary."""
    try:
        with fs.directory(parts[:-1]) as dir_fd:
            fd, _ = fs.open_in(dir_fd, parts)
    except TetherError:
        return False
    try:
        return _sniffed(fd)
    finally:
        os.close(fd)


def _scan_file(
    collector: _Collector, fd: int, parts: Parts, regex: re.Pattern[str], deadline: Deadline
) -> bool:
    """Search one open file; False once the collector is full."""
    with os.fdopen(fd, "rb") as f:
        if b"\0" in f.read(BINARY_SNIFF):
            return True
        f.seek(0)
        for number, raw in enumerate(f, 1):
            if number % 8192 == 0:
                deadline.check()
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if regex.search(line.decode("utf-8", "replace")) and not collector.add(
                parts, number, raw
            ):
                return False
    return True


def _python(collector: _Collector, regex: re.Pattern[str], deadline: Deadline) -> None:
    fs = collector.fs
    if not collector.base_is_dir:
        if collector.wanted(collector.base) is None:
            return
        try:
            fd, _ = fs.open_file(collector.base)
        except TetherError:
            return
        _scan_file(collector, fd, collector.base, regex, deadline)
        return
    for entry in fs.walk(collector.base, skip_names=SKIP_NAMES, check=deadline.check):
        if entry.kind != "file" or collector.wanted(entry.parts) is None:
            continue
        deadline.check()
        try:
            fd, _ = fs.open_in(entry.dir_fd, entry.parts)
        except TetherError:
            continue
        if not _scan_file(collector, fd, entry.parts, regex, deadline):
            return


class _RgText(msgspec.Struct):
    text: str | None = None
    encoded: str | None = msgspec.field(default=None, name="bytes")
    """Base64, for data that is not UTF-8."""

    def raw(self) -> bytes:
        if self.text is not None:
            return self.text.encode("utf-8", "surrogateescape")
        return base64.b64decode(self.encoded or "")


class _RgMatch(msgspec.Struct):
    path: _RgText
    lines: _RgText
    line_number: int | None = None


class _RgMessage(msgspec.Struct):
    type: str
    data: msgspec.Raw


def _rg_argv(rg: str, collector: _Collector, p: GrepParams) -> list[str]:
    argv = [rg, "--json", "--no-config", "--no-follow", "--hidden", "--no-ignore", "--text"]
    argv += ["--encoding", "none", "--sort", "path", "--no-messages"]
    argv.append("--ignore-case" if p.ignore_case else "--case-sensitive")
    if p.glob is not None and _SAFE_GLOB.fullmatch(p.glob):
        argv += ["--glob", p.glob]
    argv += [f"--glob=!{name}" for name in sorted(SKIP_NAMES)]
    base = collector.fs.absolute(collector.base)
    return [*argv, "--regexp", p.pattern, "--", base]


async def _ripgrep(
    rg: str, bwrap: str, ctx: ToolContext, collector: _Collector, p: GrepParams
) -> None:
    decoder = msgspec.json.Decoder(_RgMessage)
    match_decoder = msgspec.json.Decoder(_RgMatch)
    pending = bytearray()
    summary = False

    def on_output(stream: str, data: bytes) -> None:
        nonlocal summary
        if stream != "stdout" or collector.full.is_set():
            return
        pending.extend(data)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        for line in lines:
            message = decoder.decode(line)
            summary = summary or message.type == "summary"
            if message.type != "match":
                continue
            match = match_decoder.decode(message.data)
            parts = collector.reported(os.fsdecode(match.path.raw()))
            if parts is None or match.line_number is None:
                continue
            if not collector.add(parts, match.line_number, match.lines.raw()):
                collector.full.set()
                return

    fs = ctx.fs
    top = collector.base if collector.base_is_dir else collector.base[:-1]
    with fs.directory(top) as fd:
        spec = SandboxSpec(
            binds=[Bind(fs.absolute(top), writable=False, fd=fd)],
            cwd=fs.absolute(top),
            hidden=fs.protected.locations(),
            system=TOOL_DIRS,
        )
        argv, fds = command(_rg_argv(rg, collector, p), spec, bwrap=bwrap)
        done = await run_process(
            argv,
            cwd="/",
            env={},
            timeout=ctx.timeout,
            output_cap=64 * 1024,
            on_output=on_output,
            capture=("stderr",),
            stop=collector.full,
            call_id=ctx.call_id,
            pass_fds=fds,
        )
    if done.timed_out:
        raise ToolTimeout(
            f"grep ran past its {ctx.timeout:g} s deadline",
            data={"timeout": ctx.timeout, "matches": len(collector.found)},
        )
    if done.exit_code == 2 and not summary and not done.stopped:
        message = done.output.decode("utf-8", "replace").strip() or "ripgrep failed"
        reason = "invalid_pattern" if "regex" in message else "grep_failed"
        raise failed(f"grep: {message}", reason, pattern=p.pattern)


def _base_is_dir(fs: WorkspaceFS, base: Parts) -> bool:
    """True for a directory, False for a regular file; ToolFailed/PolicyDenied otherwise."""
    try:
        with fs.directory(base):
            return True
    except ToolFailed as exc:
        if exc.data.get("reason") != "not_a_directory" or not base:
            raise
    fd, _ = fs.open_file(base)
    os.close(fd)
    return False


async def search(ctx: ToolContext, p: GrepParams, *, engine: Engine | None = None) -> GrepResult:
    """Run grep with the given engine (default: ripgrep when it can run sandboxed, else Python)."""
    fs = ctx.fs
    base = fs.parts(p.path)
    deadline = ctx.deadline()
    base_is_dir = await run_blocking(deadline, lambda: _base_is_dir(fs, base))
    collector = _Collector(fs, base, base_is_dir, p.glob, p.limit)
    sandbox = ctx.sandbox
    bwrap = sandbox.bwrap_path if sandbox is not None and sandbox.active else None
    rg = shutil.which("rg") if engine != "python" and bwrap is not None else None
    if engine == "ripgrep" and rg is None:
        why = "is not installed" if bwrap is not None else "runs only inside the sandbox"
        raise failed(f"ripgrep (rg) {why}", "engine_unavailable")
    if rg is not None and bwrap is not None:
        await _ripgrep(rg, bwrap, ctx, collector, p)
        return collector.result("ripgrep")
    try:
        regex = re.compile(p.pattern, re.IGNORECASE if p.ignore_case else 0)
    except re.error as exc:
        raise failed(f"invalid regex {p.pattern!r}: {exc}", "invalid_pattern") from exc
    try:
        await asyncio.wait_for(
            run_blocking(deadline, lambda: _python(collector, regex, deadline)), ctx.timeout + 1
        )
    except TimeoutError:
        raise ToolTimeout(
            f"grep ran past its {ctx.timeout:g} s deadline", data={"timeout": ctx.timeout}
        ) from None
    return collector.result("python")


async def grep(ctx: ToolContext, p: GrepParams) -> GrepResult:
    """Search file contents under ``path`` for ``pattern``; see the module docstring."""
    return await search(ctx, p)
