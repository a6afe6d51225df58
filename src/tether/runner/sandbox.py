"""The bubblewrap sandbox: detection, and a sandbox built from an allowlist.

:func:`detect` decides once, at daemon start, whether commands can run under ``bwrap``.
:func:`command` builds the ``bwrap`` argv for one command from a :class:`SandboxSpec`.
Nothing is visible inside unless it is listed:

- the system directories, read-only (``/usr``, ``/bin``, ``/lib*``, ``/sbin``, ``/etc``,
  ``/opt``; symlinked ones stay symlinks);
- fresh ``/proc`` (own pid namespace), ``/dev`` and ``/tmp``, and a private, empty HOME;
- the workspace (or the parts of it a token allows), writable, and the configured
  read-only paths (toolchains under HOME), each bound **by descriptor**: the directory
  the runner checked is the one mounted, whatever its path names by then;
- protected directories and files that fall inside any of those (tether's own
  directories when the workspace is HOME, say) are covered by an empty read-only tmpfs
  (or ``/dev/null``), and every directory between the bound root and them is bound
  onto itself, so no process in any sandbox can rename them out from under the cover.

The command gets every namespace of its own (network too, unless allowed), no
capabilities even when the runner is root, and dies with the runner.

``--new-session`` is not used: :mod:`tether.runner.process` already starts bwrap in a
new session, so the command has no controlling terminal, and keeping the command in
bwrap's process group lets a group kill reach it directly; the pid namespace takes every
descendant down with it when the command ends.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tether.errors import ConfigError, PolicyDenied
from tether.runner.protected import Location
from tether.security.paths import is_within

__all__ = [
    "PROBE_TIMEOUT",
    "SYSTEM_DIRS",
    "TOOL_DIRS",
    "Bind",
    "SandboxInfo",
    "SandboxMode",
    "SandboxSpec",
    "command",
    "detect",
]

SandboxMode = Literal["auto", "bwrap", "off"]
SandboxStatus = Literal["bwrap", "off", "unavailable"]
PROBE_TIMEOUT = 10.0
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
"""Read-only in a shell's sandbox."""
TOOL_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only in a helper program's sandbox (ripgrep): enough to run it, no ``/etc``."""
_TMP = "/tmp"  # noqa: S108 - a mount point inside the sandbox, not a temporary file
_ETC_LINKS = ("/etc/resolv.conf", "/etc/hosts", "/etc/localtime")
"""Files in /etc that are often symlinks into /run or elsewhere: their targets are bound."""


@dataclass(frozen=True)
class SandboxInfo:
    """Whether shell commands run sandboxed, and why (for logs and ``tether runners list``)."""

    bwrap_path: str | None
    status: SandboxStatus
    reason: str

    @property
    def active(self) -> bool:
        return self.status == "bwrap"


@dataclass(frozen=True, slots=True)
class Bind:
    """A directory made visible at ``dest``: bound from ``fd`` (preferred) or from ``dest``."""

    dest: str
    writable: bool
    fd: int | None = None


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandboxed command may see."""

    binds: Sequence[Bind]
    cwd: str
    hidden: Sequence[Location] = ()
    home: str | None = None
    """Replaced by an empty tmpfs (unless a writable bind covers it)."""
    system: Sequence[str] = SYSTEM_DIRS
    network: bool = False


def _base(network: bool) -> list[str]:
    cmd = ["--die-with-parent", "--unshare-all", "--cap-drop", "ALL"]
    if network:
        cmd.append("--share-net")
    return cmd


def _system(dirs: Sequence[str]) -> list[str]:
    cmd: list[str] = []
    for path in dirs:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    return cmd


@functools.cache
def _etc_targets(system: tuple[str, ...]) -> tuple[str, ...]:
    """Targets of /etc symlinks that lie outside the bound system dirs (e.g. /run/...)."""
    if "/etc" not in system:
        return ()
    real_system = [os.path.realpath(d) for d in system if os.path.exists(d)]
    out: list[str] = []
    for link in _ETC_LINKS:
        real = os.path.realpath(link)
        if os.path.isfile(real) and not any(is_within(real, d) for d in real_system):
            out.append(real)
    return tuple(out)


def _within_any(path: str, roots: Sequence[str]) -> str | None:
    best = None
    for root in roots:
        if is_within(path, root) and (best is None or len(root) > len(best)):
            best = root
    return best


def _hide(spec: SandboxSpec, system: Sequence[str]) -> list[str]:
    writable = [b.dest for b in spec.binds if b.writable]
    sources = [*system, *(b.dest for b in spec.binds)]
    cmd: list[str] = []
    pinned: set[str] = set()
    covered: list[str] = []
    for where in sorted(spec.hidden, key=lambda loc: loc.path):
        path = where.path
        if any(is_within(path, c) for c in covered):
            continue
        if where.is_dir and any(is_within(dest, path) for dest in writable):
            raise PolicyDenied(
                f"a workspace lies inside protected path {where.label!r}; refusing to sandbox it",
                data={"reason": "denied_path", "path": path},
            )
        source = _within_any(path, sources)
        if source is None or path == source:
            continue  # not visible in the sandbox at all
        if source in writable:
            # Bind each directory between the writable root and the protected path onto
            # itself: a mount point cannot be renamed, so the cover cannot be moved away.
            rel = os.path.relpath(os.path.dirname(path), source)
            at = source
            for part in [] if rel == "." else rel.split("/"):
                at = os.path.join(at, part)
                if at not in pinned:
                    pinned.add(at)
                    cmd += ["--bind", at, at]
        if where.is_dir:
            cmd += ["--tmpfs", path, "--remount-ro", path]
            covered.append(path)
        else:
            cmd += ["--ro-bind", "/dev/null", path]
    return cmd


def command(argv: Sequence[str], spec: SandboxSpec, *, bwrap: str) -> tuple[list[str], list[int]]:
    """The ``bwrap`` command line for ``argv`` and the descriptors it must inherit."""
    system = [d for d in spec.system if os.path.lexists(d)]
    cmd = [bwrap, *_base(spec.network), *_system(system)]
    for target in _etc_targets(tuple(system)):
        cmd += ["--ro-bind", target, target]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", _TMP]
    writable = [b.dest for b in spec.binds if b.writable]
    home = spec.home
    if (
        home is not None
        and home != "/"
        and not any(is_within(home, d) for d in system)
        and not any(is_within(home, w) for w in writable)
    ):
        cmd += ["--tmpfs", home]
    fds: list[int] = []
    for bind in sorted(spec.binds, key=lambda b: (b.dest.count("/"), b.dest)):
        if bind.fd is not None:
            cmd += ["--bind-fd" if bind.writable else "--ro-bind-fd", str(bind.fd), bind.dest]
            fds.append(bind.fd)
        else:
            cmd += ["--bind" if bind.writable else "--ro-bind", bind.dest, bind.dest]
    cmd += _hide(spec, system)
    cmd += ["--chdir", spec.cwd, "--", *argv]
    return cmd, fds


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str) -> str | None:
    """Run bwrap twice (version, a trivial sandbox); return an error message or None."""
    true = shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory(prefix="tether-probe-") as work:
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            argv, fds = command(
                [true], SandboxSpec(binds=[Bind(work, True, fd)], cwd=work), bwrap=bwrap
            )
            for check, pass_fds in (([bwrap, "--version"], ()), (argv, tuple(fds))):
                try:
                    done = subprocess.run(
                        check,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=PROBE_TIMEOUT,
                        check=False,
                        pass_fds=pass_fds,
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    return f"{check[0]} failed: {exc}"
                if done.returncode != 0:
                    detail = done.stderr.decode("utf-8", "replace").strip()
                    return f"{check[0]} failed: {detail or f'exit {done.returncode}'}"
        finally:
            os.close(fd)
    return None


def detect(mode: SandboxMode, bwrap: str = "bwrap") -> SandboxInfo:
    """Decide how shell commands run (the probe result is cached).

    ``off`` runs them unsandboxed, as asked. ``auto`` sandboxes them when bubblewrap
    works and otherwise refuses to run them (status ``unavailable``); ``bwrap`` requires
    the sandbox and raises :class:`ConfigError` without it.
    """
    if mode == "off":
        return SandboxInfo(
            None, "off", "sandbox disabled (runner.sandbox = off): shell runs unsandboxed"
        )
    if not sys.platform.startswith("linux"):
        error = f"the sandbox needs Linux (this is {sys.platform})"
    else:
        path = shutil.which(bwrap)
        error = f"bubblewrap ({bwrap}) is not installed" if path is None else _probe(path)
        if error is None:
            return SandboxInfo(path, "bwrap", f"shell commands run under {path}")
    if mode == "bwrap":
        raise ConfigError(
            f"runner.sandbox is 'bwrap' but bubblewrap cannot be used: {error}; install "
            "bubblewrap and allow unprivileged user namespaces, or set runner.sandbox = 'off' "
            "to run shell commands unsandboxed"
        )
    return SandboxInfo(
        None,
        "unavailable",
        f"no sandbox: {error}; shell commands are refused (set runner.sandbox = 'off' to run "
        "them unsandboxed)",
    )
