"""The shell tool: ``bash -c COMMAND`` in the workspace, sandboxed when possible.

The command runs in its own process group (see :mod:`tether.runner.process`) with a
scrubbed environment: only the variables named in ``runner.env_allowlist``, plus
``PWD``. stdout and stderr are merged in arrival order, streamed to the progress
callback, and capped at ``runner.output_cap_bytes`` (the rest is read and counted, not
kept). A non-zero exit status is a result, not an error. On timeout or cancellation the
whole process group is killed; a timeout raises ``ToolTimeout`` carrying the partial
output.

With an active bubblewrap sandbox the command sees a read-only file system except the
allowed part of the workspace, no denied paths, and no network unless
``runner.network`` is true. Without one it runs with the daemon's own rights; when
``runner.sandbox`` is ``bwrap`` the tool refuses to run unsandboxed.
"""

from __future__ import annotations

import codecs
import os
import shutil
from typing import Annotated

import msgspec

from tether.errors import PolicyDenied, ToolTimeout
from tether.runner.process import ProcessResult, run_process
from tether.runner.sandbox import wrap
from tether.runner.tools.base import Progress, ToolContext, display_path, failed

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


async def shell(ctx: ToolContext, p: ShellParams) -> ShellResult:
    """Run ``bash -c command`` in ``cwd``; see the module docstring."""
    cwd = ctx.policy.resolve(p.cwd)
    if not cwd.is_dir():
        shown = display_path(ctx.policy.relative(cwd))
        raise failed(f"cwd {shown!r} is not a directory", "not_a_directory", shown)
    config = ctx.config
    timeout = effective_timeout(ctx, p.timeout)
    env = {name: os.environ[name] for name in config.env_allowlist if name in os.environ}
    env["PWD"] = os.fspath(cwd)
    argv = [shutil.which("bash") or "/bin/bash", "-c", p.command]
    sandbox = ctx.sandbox
    bwrap = sandbox.bwrap_path if sandbox is not None and sandbox.active else None
    sandboxed = bwrap is not None
    if bwrap is not None:
        argv = wrap(
            argv,
            bwrap=bwrap,
            workspace=ctx.policy.check_root(),
            writable=ctx.policy.writable_roots,
            cwd=cwd,
            denied=ctx.policy.denied_paths,
            network=config.network,
        )
    elif config.sandbox == "bwrap":
        raise PolicyDenied(
            "runner.sandbox is 'bwrap' but no working sandbox is available; refusing to run",
            data={"reason": "sandbox_unavailable"},
        )
    forward = None if ctx.progress is None else _Forward(ctx.progress, config.output_cap_bytes)
    done = await run_process(
        argv,
        cwd=cwd,
        env=env,
        timeout=timeout,
        output_cap=config.output_cap_bytes,
        on_output=forward,
    )
    if done.timed_out:
        raise ToolTimeout(
            f"command timed out after {timeout:g} s; its process group was killed",
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
