"""The bubblewrap sandbox for shell commands: detection and command lines.

:func:`detect` decides once, at daemon start, whether commands run under ``bwrap``;
:func:`wrap` builds the ``bwrap`` argv for one command. Inside the sandbox the whole
file system is read-only except the workspace (or the roots a capability token
allows), ``/tmp`` is a private tmpfs, denied paths are hidden (an empty read-only tmpfs
over a directory, ``/dev/null`` over a file), the command sees only its own processes,
and without network access it gets a network namespace of its own with only ``lo``.

``--new-session`` is not used: :mod:`tether.runner.process` already starts bwrap in a
new session, so the command has no controlling terminal to inject keystrokes into,
and keeping the command in bwrap's process group lets a group kill reach it directly
(the pid namespace and ``--die-with-parent`` are a second line of defence).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tether.errors import ConfigError
from tether.security.paths import is_within

__all__ = ["PROBE_TIMEOUT", "SandboxInfo", "SandboxMode", "detect", "wrap"]

SandboxMode = Literal["auto", "bwrap", "off"]
PROBE_TIMEOUT = 10.0
_TMP = "/tmp"  # noqa: S108 - a mount point inside the sandbox, not a temporary file
_PRIVATE = (_TMP, "/proc", "/dev")
"""Mounted fresh inside the sandbox; denied paths under them are already invisible."""


@dataclass(frozen=True)
class SandboxInfo:
    """What sandbox shell commands run in."""

    bwrap_path: str | None
    active: bool
    reason: str
    """Why the sandbox is (in)active, for ``tether runner status`` and logs."""


def _base(bwrap: str) -> list[str]:
    return [
        bwrap,
        "--die-with-parent",
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        _TMP,
    ]


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str) -> str | None:
    """Run bwrap twice (version, trivial sandbox); return an error message or None."""
    true = shutil.which("true") or "/bin/true"
    checks = [
        [bwrap, "--version"],
        [*_base(bwrap), "--remount-ro", _TMP, "--unshare-net", "--", true],
    ]
    for argv in checks:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv[:2])} failed: {exc}"
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
            return f"{' '.join(argv[:2])} failed: {detail}"
    return None


def detect(mode: SandboxMode) -> SandboxInfo:
    """Decide whether shell commands are sandboxed (the probe result is cached).

    ``off`` never sandboxes; ``auto`` sandboxes when bwrap works; ``bwrap`` requires it
    and raises :class:`ConfigError` otherwise.
    """
    if mode == "off":
        return SandboxInfo(None, False, "sandbox disabled (runner.sandbox = off)")
    path = shutil.which("bwrap")
    error = "bwrap is not installed (not found on PATH)" if path is None else _probe(path)
    if error is None:
        return SandboxInfo(path, True, f"commands run under {path}")
    if mode == "bwrap":
        raise ConfigError(
            f"runner.sandbox is 'bwrap' but bubblewrap cannot be used: {error}; "
            "install bubblewrap, allow unprivileged user namespaces, or set "
            "runner.sandbox to 'auto' or 'off'"
        )
    return SandboxInfo(path, False, f"no sandbox: {error}")


def wrap(
    argv: Sequence[str],
    *,
    workspace: Path,
    cwd: Path,
    denied: Sequence[Path],
    network: bool,
    bwrap: str = "bwrap",
    writable: Sequence[Path] | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in ``cwd`` inside the sandbox.

    ``writable`` (default: just ``workspace``) are bound read-write; existing ``denied``
    paths are hidden, except ones that would hide a writable root.
    """
    roots = [os.path.realpath(p) for p in (writable if writable is not None else [workspace])]
    cmd = _base(bwrap)
    for root in roots:
        cmd += ["--bind", root, root]
    hidden: list[str] = []
    for path in sorted({os.path.realpath(p) for p in denied}):
        if not os.path.lexists(path) or any(is_within(path, h) for h in hidden):
            continue
        if any(is_within(root, path) for root in roots):
            continue
        exposed = any(is_within(path, root) for root in roots)
        if not exposed and any(is_within(path, p) for p in _PRIVATE):
            continue
        if os.path.isdir(path):
            cmd += ["--tmpfs", path, "--remount-ro", path]
            hidden.append(path)
        else:
            cmd += ["--ro-bind", "/dev/null", path]
    if not network:
        cmd.append("--unshare-net")
    cmd += ["--chdir", os.fspath(cwd), "--", *argv]
    return cmd
