"""File transfers between the gateway and the workspace: put_file and get_file.

``put_file`` writes a file the gateway holds (a chat attachment) into the workspace: it
pulls the bytes from the gateway in slices while the call runs (``file.pull``, served
only for this call), checks them against the size and SHA-256 its signed arguments
name, then writes them atomically like ``write_file``. ``get_file`` hands a workspace
file to the gateway (``/send``): opened like ``read_file`` (no symlink followed, a
regular file), at most ``max_size`` bytes, pushed in order (``file.push``). Both take
their paths through the call's :class:`~tether.runner.fs.WorkspaceFS`, so the path
policy, protected paths and the descriptor-relative opening all apply.
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

import msgspec

from tether.protocol.runners import FILE_CHUNK
from tether.runner.tools.base import FileLink, ToolContext, display_path, failed, run_blocking
from tether.runner.tools.files import PathArg, existing_mode, os_failed
from tether.security.paths import Parts, show_parts

__all__ = [
    "MAX_TRANSFER_BYTES",
    "GetFileParams",
    "GetFileResult",
    "PutFileParams",
    "PutFileResult",
    "get_file",
    "put_file",
]

MAX_TRANSFER_BYTES = 64 * 1024 * 1024
Size = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRANSFER_BYTES)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class PutFileParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Write the file the gateway holds for this call into the workspace."""

    path: Annotated[PathArg, msgspec.Meta(description="File, workspace-relative.")]
    size: Size
    sha256: Sha256


class PutFileResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    size: int
    sha256: str
    created: bool


class GetFileParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Hand a workspace file to the gateway."""

    path: Annotated[PathArg, msgspec.Meta(description="File, workspace-relative.")]
    max_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_TRANSFER_BYTES)]


class GetFileResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    size: int
    sha256: str


def _shown(parts: Parts) -> str:
    return display_path(show_parts(parts))


def _link(ctx: ToolContext) -> tuple[FileLink, str]:
    if ctx.files is None or ctx.call_id is None:
        raise failed("this runner cannot move files here", "no_transfer")
    return ctx.files, ctx.call_id


async def put_file(ctx: ToolContext, p: PutFileParams) -> PutFileResult:
    """Pull the call's file from the gateway, check it, and write it atomically."""
    parts = ctx.fs.parts(p.path)
    shown = _shown(parts)
    if not parts:
        raise failed("the workspace root is a directory", "is_a_directory", shown)
    link, call_id = _link(ctx)
    deadline = ctx.deadline()
    data = bytearray()
    while True:
        deadline.check()
        chunk, eof = await link.pull(call_id, len(data), FILE_CHUNK)
        data += chunk
        if len(data) > p.size:
            raise failed(f"{shown!r}: the gateway sent more than {p.size} bytes", "mismatch")
        if eof or not chunk:
            break
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != p.size or digest != p.sha256:
        raise failed(f"{shown!r}: the bytes are not the file the call names", "mismatch", shown)

    def write() -> bool:
        with ctx.fs.directory(parts[:-1], create=True, missing="parent_missing") as dir_fd:
            mode = existing_mode(ctx.fs, dir_fd, parts)
            try:
                ctx.fs.replace_file(dir_fd, parts, bytes(data), mode)
            except OSError as exc:
                raise os_failed(exc, shown) from exc
        return mode is None

    created = await run_blocking(deadline, write)
    return PutFileResult(path=shown, size=len(data), sha256=digest, created=created)


async def get_file(ctx: ToolContext, p: GetFileParams) -> GetFileResult:
    """Push a workspace file of at most ``max_size`` bytes to the gateway, in order."""
    parts = ctx.fs.parts(p.path)
    shown = _shown(parts)
    link, call_id = _link(ctx)
    deadline = ctx.deadline()
    fd, st = await run_blocking(deadline, lambda: ctx.fs.open_file(parts))
    try:
        if st.st_size > p.max_size:
            raise failed(
                f"{shown!r} is {st.st_size} bytes, over the {p.max_size}-byte limit",
                "too_large",
                shown,
                size=st.st_size,
                limit=p.max_size,
            )
        digest = hashlib.sha256()
        sent = 0
        while True:
            deadline.check()
            chunk = await run_blocking(deadline, lambda: os.read(fd, FILE_CHUNK))
            if not chunk:
                break
            if sent + len(chunk) > p.max_size:  # grew while being read
                raise failed(f"{shown!r} grew past the {p.max_size}-byte limit", "too_large")
            await link.push(call_id, sent, chunk)
            digest.update(chunk)
            sent += len(chunk)
    finally:
        os.close(fd)
    return GetFileResult(path=shown, size=sent, sha256=digest.hexdigest())
