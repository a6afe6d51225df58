"""File tools: read_file, write_file, edit_file, list_dir and glob.

Every path argument goes through the call's :class:`~tether.security.paths.PathPolicy`.
Files are opened without following a final symlink, so a path swapped for a symlink
after the check fails instead of escaping. Writes are atomic: a temporary file in the
same directory, flushed, then renamed over the target (whose mode is kept). The
blocking work runs in a worker thread that honours the call's deadline.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from tether.errors import PolicyDenied
from tether.runner.tools.base import Deadline, ToolContext, display_path, failed, run_blocking
from tether.security.paths import PathPolicy, compile_glob, glob_match

__all__ = [
    "DirEntry",
    "EditFileParams",
    "EditFileResult",
    "GlobParams",
    "GlobResult",
    "ListDirParams",
    "ListDirResult",
    "ReadFileParams",
    "ReadFileResult",
    "WriteFileParams",
    "WriteFileResult",
    "edit_file",
    "glob",
    "is_binary",
    "list_dir",
    "read_file",
    "write_file",
]

BINARY_SNIFF = 8192
MAX_EDIT_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024

PathArg = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
DirArg = Annotated[
    str, msgspec.Meta(min_length=1, max_length=4096, description="Directory, workspace-relative.")
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class ReadFileParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Read a UTF-8 text file, a window of lines at a time."""

    path: Annotated[PathArg, msgspec.Meta(description="File, workspace-relative.")]
    offset: Annotated[int, msgspec.Meta(ge=0, description="First line (0-based).")] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=20_000, description="Lines to return.")] = 2000


class ReadFileResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    size: int
    content: str = ""
    lines_returned: int = 0
    total_lines: int = 0
    truncated: bool = False
    """More lines follow the window, or the output cap cut it short."""
    binary: bool = False
    """The file is not UTF-8 text; ``content`` is empty."""


class WriteFileParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Create or replace a file with the given text (atomically)."""

    path: Annotated[PathArg, msgspec.Meta(description="File, workspace-relative.")]
    content: Annotated[str, msgspec.Meta(max_length=16 * 1024 * 1024)]
    create_dirs: bool = True


class WriteFileResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    bytes_written: int
    created: bool


class EditFileParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Replace the one exact occurrence of ``old`` with ``new``."""

    path: Annotated[PathArg, msgspec.Meta(description="File, workspace-relative.")]
    old: Annotated[str, msgspec.Meta(min_length=1, max_length=1024 * 1024)]
    new: Annotated[str, msgspec.Meta(max_length=1024 * 1024)]


class EditFileResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    replacements: int


class ListDirParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """List a directory (symlinks are reported, not followed)."""

    path: DirArg = "."
    limit: Limit = 1000


class DirEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    """Bytes for files, 0 for everything else."""


class ListDirResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    entries: list[DirEntry]
    truncated: bool


class GlobParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Find paths matching a glob pattern (``*``, ``?``, ``[...]``, ``**``)."""

    pattern: Annotated[
        str, msgspec.Meta(min_length=1, max_length=1024, description="Relative to path.")
    ]
    path: DirArg = "."
    limit: Limit = 1000


class GlobResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    paths: list[str]
    """Workspace-relative, in name order."""
    truncated: bool


def _os_failed(exc: OSError, shown: str) -> Exception:
    if exc.errno == errno.ENOENT:
        return failed(f"{shown!r} does not exist", "not_found", shown)
    if exc.errno == errno.EISDIR:
        return failed(f"{shown!r} is a directory", "is_a_directory", shown)
    if exc.errno == errno.ENOTDIR:
        return failed(f"a parent of {shown!r} is not a directory", "not_a_directory", shown)
    if exc.errno == errno.ELOOP:
        return PolicyDenied(
            f"path {shown!r} turned into a symlink while in use",
            data={"path": shown, "reason": "outside_workspace"},
        )
    return failed(f"{shown!r}: {exc.strerror or exc}", "os_error", shown, errno=exc.errno)


def _open_regular(real: Path, shown: str) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without following a final symlink or blocking."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise _os_failed(exc, shown) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise failed(f"{shown!r} is a directory; use list_dir", "is_a_directory", shown)
        raise failed(f"{shown!r} is not a regular file", "not_a_file", shown)
    return fd, st


def is_binary(head: bytes) -> bool:
    """True if ``head`` (a file's first bytes) has a NUL byte or is not UTF-8."""
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


def _read(
    real: Path, shown: str, p: ReadFileParams, cap: int, deadline: Deadline
) -> ReadFileResult:
    fd, st = _open_regular(real, shown)
    binary = ReadFileResult(path=shown, size=st.st_size, binary=True)
    with os.fdopen(fd, "rb") as f:
        if is_binary(f.read(BINARY_SNIFF)):
            return binary
        f.seek(0)
        chunks: list[bytes] = []
        used = total = returned = pieces = 0
        capped = truncated = False
        at_start = True
        check = codecs.getincrementaldecoder("utf-8")()
        for piece in iter(lambda: f.readline(_CHUNK), b""):
            pieces += 1
            if pieces % 4096 == 0:
                deadline.check()
            try:
                check.decode(piece)
            except UnicodeDecodeError:
                return binary
            if at_start:
                total += 1
            at_start = piece.endswith(b"\n")
            index = total - 1
            if index < p.offset:
                continue
            if capped or index >= p.offset + p.limit:
                truncated = True
                continue
            take = piece[: cap - used]
            if take and (not chunks or chunks[-1].endswith(b"\n")):
                returned += 1
            chunks.append(take)
            used += len(take)
            if len(take) < len(piece):
                capped = truncated = True
        try:
            check.decode(b"", final=True)
        except UnicodeDecodeError:
            return binary
    # Valid UTF-8 throughout; a cut at the cap may only leave an incomplete last character.
    content = codecs.getincrementaldecoder("utf-8")().decode(b"".join(chunks), final=not capped)
    return ReadFileResult(
        path=shown,
        content=content,
        lines_returned=returned,
        total_lines=total,
        truncated=truncated,
        binary=False,
        size=st.st_size,
    )


async def read_file(ctx: ToolContext, p: ReadFileParams) -> ReadFileResult:
    """Read lines ``offset`` .. ``offset + limit`` of a text file."""
    real = ctx.policy.resolve(p.path)
    shown = display_path(ctx.policy.relative(real))
    deadline = ctx.deadline()
    cap = ctx.config.output_cap_bytes
    return await run_blocking(deadline, lambda: _read(real, shown, p, cap, deadline))


def atomic_write(target: Path, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``target`` via a temporary file in the same directory."""
    tmp = target.with_name(f".{target.name[:100]}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o666 if mode is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _existing_mode(real: Path, shown: str) -> int | None:
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_failed(exc, shown) from exc
    if stat.S_ISDIR(st.st_mode):
        raise failed(f"{shown!r} is a directory", "is_a_directory", shown)
    if not stat.S_ISREG(st.st_mode):
        raise failed(f"{shown!r} is not a regular file", "not_a_file", shown)
    return stat.S_IMODE(st.st_mode)


def _write(real: Path, shown: str, p: WriteFileParams) -> WriteFileResult:
    mode = _existing_mode(real, shown)
    data = p.content.encode("utf-8")
    try:
        if not real.parent.is_dir():
            if not p.create_dirs:
                raise failed(f"the directory of {shown!r} does not exist", "parent_missing", shown)
            real.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(real, data, mode)
    except OSError as exc:
        raise _os_failed(exc, shown) from exc
    return WriteFileResult(path=shown, bytes_written=len(data), created=mode is None)


async def write_file(ctx: ToolContext, p: WriteFileParams) -> WriteFileResult:
    """Create or replace a file atomically, keeping the mode of an existing one."""
    real = ctx.policy.resolve(p.path)
    shown = display_path(ctx.policy.relative(real))
    return await run_blocking(ctx.deadline(), lambda: _write(real, shown, p))


def _count(text: str, old: str) -> int:
    count, at = 0, text.find(old)
    while at >= 0:
        count += 1
        at = text.find(old, at + 1)
    return count


def _edit(real: Path, shown: str, p: EditFileParams) -> EditFileResult:
    if not p.old:
        raise failed("old must not be empty", "empty_old", shown)
    fd, st = _open_regular(real, shown)
    if st.st_size > MAX_EDIT_BYTES:
        os.close(fd)
        raise failed(f"{shown!r} is too large to edit", "too_large", shown, size=st.st_size)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise failed(f"{shown!r} is not UTF-8 text", "binary_file", shown) from None
    count = _count(text, p.old)
    if count == 0:
        raise failed(f"old text not found in {shown!r}", "no_match", shown, count=0)
    if count > 1:
        raise failed(
            f"old text occurs {count} times in {shown!r}; include more context to make it unique",
            "multiple_matches",
            shown,
            count=count,
        )
    try:
        atomic_write(real, text.replace(p.old, p.new, 1).encode("utf-8"), stat.S_IMODE(st.st_mode))
    except OSError as exc:
        raise _os_failed(exc, shown) from exc
    return EditFileResult(path=shown, replacements=1)


async def edit_file(ctx: ToolContext, p: EditFileParams) -> EditFileResult:
    """Replace exactly one occurrence of ``old``; fail if it occurs zero or several times."""
    real = ctx.policy.resolve(p.path)
    shown = display_path(ctx.policy.relative(real))
    return await run_blocking(ctx.deadline(), lambda: _edit(real, shown, p))


def _list(policy: PathPolicy, real: Path, shown: str, limit: int) -> ListDirResult:
    entries: list[DirEntry] = []
    truncated = False
    if real.exists() and not real.is_dir():
        raise failed(f"{shown!r} is not a directory", "not_a_directory", shown)
    try:
        with os.scandir(real) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise _os_failed(exc, shown) from exc
    for entry in found:
        if policy.denied_entry(os.path.join(real, entry.name)) is not None:
            continue
        if len(entries) == limit:
            truncated = True
            break
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        kind: Literal["file", "dir", "symlink", "other"] = "other"
        if stat.S_ISLNK(st.st_mode):
            kind = "symlink"
        elif stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        size = st.st_size if kind == "file" else 0
        entries.append(DirEntry(name=display_path(entry.name), type=kind, size=size))
    return ListDirResult(path=shown, entries=entries, truncated=truncated)


async def list_dir(ctx: ToolContext, p: ListDirParams) -> ListDirResult:
    """List a directory's entries by name; denied entries are left out."""
    real = ctx.policy.resolve(p.path)
    shown = display_path(ctx.policy.relative(real))
    return await run_blocking(ctx.deadline(), lambda: _list(ctx.policy, real, shown, p.limit))


def _glob(policy: PathPolicy, base: Path, p: GlobParams, deadline: Deadline) -> GlobResult:
    parts, dirs_only = compile_glob(p.pattern)
    if not base.is_dir():
        shown = display_path(policy.relative(base))
        raise failed(f"{shown!r} is not a directory", "not_a_directory", shown)
    depth = None if "**" in parts else len(parts)
    found: list[str] = []
    for entry in policy.walk(base, max_depth=depth, check=deadline.check):
        if not glob_match(parts, entry.rel):
            continue
        is_dir = entry.kind == "dir"
        if entry.kind == "symlink":
            real = os.path.realpath(entry.path)
            if not policy.allows(real):
                continue
            is_dir = os.path.isdir(real)
        if dirs_only and not is_dir:
            continue
        if len(found) == p.limit:
            return GlobResult(paths=found, truncated=True)
        found.append(display_path(policy.relative(entry.path)))
    return GlobResult(paths=found, truncated=False)


async def glob(ctx: ToolContext, p: GlobParams) -> GlobResult:
    """Workspace-relative paths under ``path`` matching ``pattern``, never via a symlinked dir."""
    base = ctx.policy.resolve(p.path)
    deadline = ctx.deadline()
    return await run_blocking(deadline, lambda: _glob(ctx.policy, base, p, deadline))
