"""File tools: read_file, write_file, edit_file, list_dir and glob.

Every path goes through the call's :class:`~tether.runner.fs.WorkspaceFS`: resolved and
opened relative to directory descriptors, no symlink followed on any component,
protected directories refused by identity, so a concurrent writer cannot redirect a
call out of the workspace. Writes are atomic: a temporary file in the same directory
(by descriptor), flushed, then renamed over the target (whose mode is kept). The
blocking work runs in a worker thread that honours the call's deadline.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from typing import Annotated, Literal

import msgspec

from tether.runner.fs import WorkspaceFS
from tether.runner.tools.base import Deadline, ToolContext, display_path, failed, run_blocking
from tether.security.paths import Parts, compile_glob, glob_match, show_parts

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
    "existing_mode",
    "glob",
    "is_binary",
    "list_dir",
    "os_failed",
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


def os_failed(exc: OSError, shown: str) -> Exception:
    """The tool failure an I/O error on ``shown`` stands for."""
    if exc.errno == errno.ENOENT:
        return failed(f"{shown!r} does not exist", "not_found", shown)
    if exc.errno == errno.ENOSPC:
        return failed(f"{shown!r}: no space left on the device", "no_space", shown)
    return failed(f"{shown!r}: {exc.strerror or exc}", "os_error", shown, errno=exc.errno)


def is_binary(head: bytes) -> bool:
    """True if ``head`` (a file's first bytes) has a NUL byte or is not UTF-8."""
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


def _shown(parts: Parts) -> str:
    return display_path(show_parts(parts))


def _read(
    fs: WorkspaceFS, parts: Parts, p: ReadFileParams, cap: int, deadline: Deadline
) -> ReadFileResult:
    fd, st = fs.open_file(parts)
    shown = _shown(parts)
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
    parts = ctx.fs.parts(p.path)
    deadline = ctx.deadline()
    cap = ctx.config.output_cap_bytes
    return await run_blocking(deadline, lambda: _read(ctx.fs, parts, p, cap, deadline))


def existing_mode(fs: WorkspaceFS, dir_fd: int, parts: Parts) -> int | None:
    """The mode of the regular file being replaced, None if it does not exist yet."""
    st = fs.entry_stat(dir_fd, parts)
    if st is None:
        return None
    shown = _shown(parts)
    if stat.S_ISDIR(st.st_mode):
        raise failed(f"{shown!r} is a directory", "is_a_directory", shown)
    if not stat.S_ISREG(st.st_mode):
        raise failed(f"{shown!r} is not a regular file", "not_a_file", shown)
    return stat.S_IMODE(st.st_mode)


def _write(fs: WorkspaceFS, parts: Parts, p: WriteFileParams) -> WriteFileResult:
    shown = _shown(parts)
    if not parts:
        raise failed("the workspace root is a directory", "is_a_directory", shown)
    data = p.content.encode("utf-8")
    with fs.directory(parts[:-1], create=p.create_dirs, missing="parent_missing") as dir_fd:
        mode = existing_mode(fs, dir_fd, parts)
        try:
            fs.replace_file(dir_fd, parts, data, mode)
        except OSError as exc:
            raise os_failed(exc, shown) from exc
    return WriteFileResult(path=shown, bytes_written=len(data), created=mode is None)


async def write_file(ctx: ToolContext, p: WriteFileParams) -> WriteFileResult:
    """Create or replace a file atomically, keeping the mode of an existing one."""
    parts = ctx.fs.parts(p.path)
    return await run_blocking(ctx.deadline(), lambda: _write(ctx.fs, parts, p))


def _count(text: str, old: str) -> int:
    count, at = 0, text.find(old)
    while at >= 0:
        count += 1
        at = text.find(old, at + 1)
    return count


def _edit(fs: WorkspaceFS, parts: Parts, p: EditFileParams) -> EditFileResult:
    shown = _shown(parts)
    if not p.old:
        raise failed("old must not be empty", "empty_old", shown)
    if not parts:
        raise failed("the workspace root is a directory", "is_a_directory", shown)
    with fs.directory(parts[:-1]) as dir_fd:
        fd, st = fs.open_in(dir_fd, parts)
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
                f"old text occurs {count} times in {shown!r}; include more context to make it "
                "unique",
                "multiple_matches",
                shown,
                count=count,
            )
        new = text.replace(p.old, p.new, 1).encode("utf-8")
        try:
            fs.replace_file(dir_fd, parts, new, stat.S_IMODE(st.st_mode))
        except OSError as exc:
            raise os_failed(exc, shown) from exc
    return EditFileResult(path=shown, replacements=1)


async def edit_file(ctx: ToolContext, p: EditFileParams) -> EditFileResult:
    """Replace exactly one occurrence of ``old``; fail if it occurs zero or several times."""
    parts = ctx.fs.parts(p.path)
    return await run_blocking(ctx.deadline(), lambda: _edit(ctx.fs, parts, p))


def _entry_kind(mode: int) -> Literal["file", "dir", "symlink", "other"]:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _list(fs: WorkspaceFS, parts: Parts, limit: int) -> ListDirResult:
    shown = _shown(parts)
    entries: list[DirEntry] = []
    truncated = False
    with fs.directory(parts) as dir_fd:
        try:
            found = fs.scan(dir_fd)
        except OSError as exc:
            raise os_failed(exc, shown) from exc
        for entry in found:
            if len(entries) == limit:
                truncated = True
                break
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if fs.protected.protects(st) is not None:
                continue
            kind = _entry_kind(st.st_mode)
            size = st.st_size if kind == "file" else 0
            entries.append(DirEntry(name=display_path(entry.name), type=kind, size=size))
    return ListDirResult(path=shown, entries=entries, truncated=truncated)


async def list_dir(ctx: ToolContext, p: ListDirParams) -> ListDirResult:
    """List a directory's entries by name; protected entries are left out."""
    parts = ctx.fs.parts(p.path)
    return await run_blocking(ctx.deadline(), lambda: _list(ctx.fs, parts, p.limit))


def _glob(fs: WorkspaceFS, base: Parts, p: GlobParams, deadline: Deadline) -> GlobResult:
    parts, dirs_only = compile_glob(p.pattern)
    depth = None if "**" in parts else len(parts)
    found: list[str] = []
    for entry in fs.walk(base, max_depth=depth, check=deadline.check):
        if entry.kind == "symlink" or (dirs_only and entry.kind != "dir"):
            continue
        if not glob_match(parts, entry.parts[len(base) :]):
            continue
        if len(found) == p.limit:
            return GlobResult(paths=found, truncated=True)
        found.append(_shown(entry.parts))
    return GlobResult(paths=found, truncated=False)


async def glob(ctx: ToolContext, p: GlobParams) -> GlobResult:
    """Workspace-relative paths under ``path`` matching ``pattern``; symlinks are neither
    listed nor followed (list_dir shows them)."""
    base = ctx.fs.parts(p.path)
    deadline = ctx.deadline()
    return await run_blocking(deadline, lambda: _glob(ctx.fs, base, p, deadline))
