"""The grep tool: regex search over the workspace, with ripgrep or in pure Python.

Both engines search the same files and return the same matches, in the same order:
regular files under ``path`` (symlinks are never followed, ``.git`` directories and
denied paths are skipped), minus files with a NUL byte in their first 8 KiB; lines
split on ``\\n``; ``glob`` matched against the file name (or, when it contains ``/``,
against the path relative to ``path``). ripgrep is used when installed and runs under
:func:`~tether.runner.process.run_process`; every file it reports is re-checked
against the path policy. The regex dialect is the engine's own (Rust ``regex`` or
Python ``re``); simple patterns mean the same in both.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from tether.errors import ToolTimeout
from tether.runner.process import run_process
from tether.runner.tools.base import Deadline, ToolContext, display_path, failed, run_blocking
from tether.runner.tools.files import BINARY_SNIFF
from tether.security.paths import PathPolicy, compile_glob, glob_match, is_within

__all__ = ["Engine", "GrepMatch", "GrepParams", "GrepResult", "grep", "search"]

Engine = Literal["ripgrep", "python"]
MAX_TEXT = 500
"""Longest line text returned, in characters."""
SKIP_NAMES = frozenset({".git"})
_SAFE_GLOB = re.compile(r"[\w.*?-]+")
_LITERAL = re.compile(r"[\w./ -]+")


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

    def __init__(self, policy: PathPolicy, base: Path, glob: str | None, limit: int) -> None:
        self.policy = policy
        self.base = base
        self.base_is_dir = base.is_dir()
        self.limit = limit
        self.found: list[tuple[tuple[bytes, ...], GrepMatch]] = []
        self.full = asyncio.Event()
        """Set by the ripgrep engine once more than ``limit`` matches are known."""
        self._files: dict[str, tuple[str, ...] | None] = {}
        self._glob: Callable[[tuple[str, ...]], bool] = lambda rel: True
        if glob is not None:
            parts, _ = compile_glob(glob)
            whole = "/" in glob
            self._glob = lambda rel: glob_match(parts, rel if whole else rel[-1:])

    def rel(self, path: str) -> tuple[str, ...] | None:
        """Components of ``path`` below the base if the file is searchable, else None."""
        if path in self._files:
            return self._files[path]
        rel: tuple[str, ...] | None = None
        if (
            self.base_is_dir
            and is_within(path, os.fspath(self.base))
            and path != os.fspath(self.base)
        ):
            rel = Path(path).relative_to(self.base).parts
        elif not self.base_is_dir and path == os.fspath(self.base):
            rel = (self.base.name,)
        if rel is not None and (
            (self.base_is_dir and SKIP_NAMES.intersection(rel))
            or not self._glob(rel)
            or not self.policy.allows(os.path.realpath(path))
            or self.policy.denied_entry(path) is not None
            or not _searchable(path)
        ):
            rel = None
        self._files[path] = rel
        return rel

    def add(self, path: str, rel: tuple[str, ...], line: int, raw: bytes) -> bool:
        """Record a match; return False once more than ``limit`` are known."""
        text = raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", "replace")
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        shown = display_path(self.policy.relative(path))
        key = tuple(os.fsencode(c) for c in rel)
        self.found.append((key, GrepMatch(path=shown, line=line, text=text)))
        return len(self.found) <= self.limit

    def result(self, engine: Engine) -> GrepResult:
        self.found.sort(key=lambda item: (item[0], item[1].line))
        matches = [m for _, m in self.found[: self.limit]]
        return GrepResult(matches=matches, truncated=len(self.found) > self.limit, engine=engine)


def _searchable(path: str) -> bool:
    """A regular file (not a symlink) without a NUL byte in its first 8 KiB."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        return b"\0" not in f.read(BINARY_SNIFF)


def _python(collector: _Collector, regex: re.Pattern[str], deadline: Deadline) -> None:
    base = collector.base
    if collector.base_is_dir:
        walk = collector.policy.walk(base, skip_names=SKIP_NAMES, check=deadline.check)
        files = [os.fspath(e.path) for e in walk if e.kind == "file"]
    else:
        files = [os.fspath(base)]
    for path in files:
        deadline.check()
        rel = collector.rel(path)
        if rel is None:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            for number, raw in enumerate(f, 1):
                if number % 8192 == 0:
                    deadline.check()
                line = raw[:-1] if raw.endswith(b"\n") else raw
                if regex.search(line.decode("utf-8", "replace")) and not collector.add(
                    path, rel, number, raw
                ):
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
    if collector.base_is_dir:
        base = os.fspath(collector.base)
        for denied in collector.policy.denied_paths:
            rel = os.path.relpath(denied, base)
            if is_within(os.fspath(denied), base) and _LITERAL.fullmatch(rel):
                argv.append(f"--glob=!/{rel}")
    return [*argv, "--regexp", p.pattern, "--", os.fspath(collector.base)]


async def _ripgrep(rg: str, ctx: ToolContext, collector: _Collector, p: GrepParams) -> None:
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
            path = os.fsdecode(match.path.raw())
            rel = collector.rel(path)
            if rel is None or match.line_number is None:
                continue
            if not collector.add(path, rel, match.line_number, match.lines.raw()):
                collector.full.set()
                return

    cwd = collector.base if collector.base_is_dir else collector.base.parent
    done = await run_process(
        _rg_argv(rg, collector, p),
        cwd=cwd,
        env={},
        timeout=ctx.timeout,
        output_cap=64 * 1024,
        on_output=on_output,
        capture=("stderr",),
        stop=collector.full,
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


async def search(ctx: ToolContext, p: GrepParams, *, engine: Engine | None = None) -> GrepResult:
    """Run grep with the given engine (default: ripgrep if installed, else Python)."""
    base = ctx.policy.resolve(p.path)
    if not base.is_dir() and not base.is_file():
        shown = display_path(ctx.policy.relative(base))
        if base.exists():
            raise failed(f"{shown!r} is not a file or directory", "not_a_file", shown)
        raise failed(f"{shown!r} does not exist", "not_found", shown)
    collector = _Collector(ctx.policy, base, p.glob, p.limit)
    rg = shutil.which("rg") if engine != "python" else None
    if engine == "ripgrep" and rg is None:
        raise failed("ripgrep (rg) is not installed", "engine_unavailable")
    if rg is not None:
        await _ripgrep(rg, ctx, collector, p)
        return collector.result("ripgrep")
    try:
        regex = re.compile(p.pattern, re.IGNORECASE if p.ignore_case else 0)
    except re.error as exc:
        raise failed(f"invalid regex {p.pattern!r}: {exc}", "invalid_pattern") from exc
    deadline = ctx.deadline()
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
