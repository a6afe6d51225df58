"""The shell tool: ``bash -c COMMAND`` in the workspace, sandboxed when possible.

The command runs in its own process group (see :mod:`tether.runner.process`) with a
scrubbed environment: only the variables named in ``runner.env_allowlist``, plus
``PWD``. stdout and stderr are merged in arrival order, streamed to the progress
callback, and capped at ``runner.output_cap_bytes`` (the rest is read and counted, not
kept). A non-zero exit status is a result, not an error. On timeout or cancellation the
whole process group is killed; a timeout raises ``ToolTimeout`` carrying the partial
output.

With the bubblewrap sandbox the command sees only what :mod:`tether.runner.sandbox`
lists: system directories read-only, the workspace (or the part a token allows)
writable, the configured read-only paths, a private HOME and /tmp, no protected path,
and no network unless ``runner.network`` is true. When the sandbox is unavailable the
tool refuses to run; only an explicit ``runner.sandbox = off`` runs commands with the
daemon's own rights (every descendant is still killed at the end of the call).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
from typing import Annotated

import msgspec

from tether.errors import PolicyDenied, ToolTimeout
from tether.runner.process import ProcessResult, run_process
from tether.runner.sandbox import Bind, SandboxSpec, command
from tether.runner.tools.base import Progress, ToolContext
from tether.security.paths import expand_home, split_path

__all__ = ["ShellParams", "ShellResult", "effective_timeout", "shell"]

TRUNCATION_MARKER = "\n[... output truncated: {dropped} more bytes ...]\n"


class ShellParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Run a bash command in the workspace; stdout and stderr are merged."""

    command: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    timeout: Annotated[float, msgspec.Meta(gt=0, description="Seconds.")] | None = None
    cwd: Annotated[
        str, msgspec.Meta(min_length=1, max_length=4096, description="Workspace-relative.")
    ] = "."


class ShellResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    exit_code: int
    """Exit status; 128 + N when killed by signal N."""
    output: str
    truncated: bool
    duration: float
    sandboxed: bool
    timed_out: bool = False


class _Forward:
    """Decodes output chunks per stream and passes at most ``cap`` bytes to ``progress``."""

    def __init__(self, progress: Progress, cap: int) -> None:
        self.progress = progress
        self.room = cap
        self.decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }

    def __call__(self, stream: str, data: bytes) -> None:
        if self.room <= 0:
            return
        data = data[: self.room]
        self.room -= len(data)
        text = self.decoders[stream].decode(data, final=self.room <= 0)
        if text:
            self.progress(stream, text)


def effective_timeout(ctx: ToolContext, requested: float | None) -> float:
    """The requested timeout (else the configured default), capped by config and ``ctx``."""
    wanted = ctx.config.default_timeout if requested is None else requested
    return min(wanted, ctx.config.max_timeout, ctx.timeout)


def _output(done: ProcessResult) -> str:
    text = done.output.decode("utf-8", "replace")
    if done.truncated:
        text += TRUNCATION_MARKER.format(dropped=done.dropped)
    return text


def _exit_code(code: int | None) -> int:
    if code is None:
        return -1
    return 128 - code if code < 0 else code


_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)


def readonly_binds(ctx: ToolContext, stack: contextlib.ExitStack) -> list[Bind]:
    """The configured read-only paths, opened now and bound by descriptor at their real
    location; missing ones and protected ones are left out."""
    binds: list[Bind] = []
    for entry in ctx.config.readonly_paths:
        path = expand_home(entry, ctx.home)
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        stack.callback(os.close, fd)
        if ctx.fs.protected.protects(os.fstat(fd)) is not None:
            continue
        binds.append(Bind(os.path.realpath(path), writable=False, fd=fd))
    return binds


def workspace_binds(ctx: ToolContext, stack: contextlib.ExitStack) -> list[Bind]:
    """The workspace (read-only when a token narrows it) and the roots the call may write,
    each opened through the descriptor walk and bound by that descriptor."""
    fs = ctx.fs
    writable = fs.writable_roots()
    binds: list[Bind] = []
    if writable != (fs.root,):
        fd = stack.enter_context(fs.directory(()))
        binds.append(Bind(fs.root, writable=False, fd=fd))
    for root in writable:
        parts = split_path(root, (fs.root,))
        fd = stack.enter_context(fs.directory(parts))
        binds.append(Bind(root, writable=True, fd=fd))
    return binds


async def shell(ctx: ToolContext, p: ShellParams) -> ShellResult:
    """Run ``bash -c command`` in ``cwd``; see the module docstring."""
    fs = ctx.fs
    cwd_parts = fs.parts(p.cwd)
    fs.check_root()
    with fs.directory(cwd_parts):
        pass  # exists and is a directory, reached without a symlink
    cwd = fs.absolute(cwd_parts)
    config = ctx.config
    timeout = effective_timeout(ctx, p.timeout)
    env = {name: os.environ[name] for name in config.env_allowlist if name in os.environ}
    env["PWD"] = cwd
    argv = [shutil.which("bash") or "/bin/bash", "-c", p.command]
    sandbox = ctx.sandbox
    if sandbox is None or sandbox.status == "unavailable":
        reason = sandbox.reason if sandbox is not None else "no sandbox was detected"
        raise PolicyDenied(
            f"refusing to run a shell command without a sandbox ({reason})",
            data={"reason": "sandbox_unavailable"},
        )
    with contextlib.ExitStack() as stack:
        fds: list[int] = []
        host_cwd = cwd
        if sandbox.bwrap_path is not None:
            spec = SandboxSpec(
                binds=[*readonly_binds(ctx, stack), *workspace_binds(ctx, stack)],
                cwd=cwd,
                hidden=fs.protected.locations(),
                home=os.fspath(ctx.home),
                network=config.network,
            )
            argv, fds = command(argv, spec, bwrap=sandbox.bwrap_path)
            host_cwd = "/"
        forward = None if ctx.progress is None else _Forward(ctx.progress, config.output_cap_bytes)
        done = await run_process(
            argv,
            cwd=host_cwd,
            env=env,
            timeout=timeout,
            output_cap=config.output_cap_bytes,
            on_output=forward,
            call_id=ctx.call_id,
            pass_fds=fds,
        )
    sandboxed = sandbox.bwrap_path is not None
    if done.timed_out:
        raise ToolTimeout(
            f"command timed out after {timeout:g} s; it and every process it started were killed",
            data={
                "timeout": timeout,
                "output": _output(done),
                "truncated": done.truncated,
                "duration": round(done.duration, 3),
                "sandboxed": sandboxed,
            },
        )
    return ShellResult(
        exit_code=_exit_code(done.exit_code),
        output=_output(done),
        truncated=done.truncated,
        duration=round(done.duration, 3),
        sandboxed=sandboxed,
    )
