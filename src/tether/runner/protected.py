"""Protected paths: what no tool may touch and no sandbox may show, known by what they are.

A protected path is configured by name: ``~/.ssh``, the runner's own data, config and
runtime directories, the user's default tether directories, ``[runner] hidden_paths``
and, under ``tether up``, the gateway's directories. A name is a weak handle: anyone
who can write the parent directory can rename it (a sandboxed ``mv .config .config2``
in a workspace that is ``$HOME``). So from the moment the runner sees a protected path
at its name, it also knows it by identity (device and inode) and holds an ``O_PATH``
descriptor to it. The descriptor keeps the inode from being reused while it is held,
and ``/proc/self/fd/N`` always names where the directory or file lives now, wherever it
was moved to.

:meth:`ProtectedPaths.refresh` runs before every tool call (one ``stat`` per entry);
:meth:`ProtectedPaths.protects` answers for any ``stat`` result; :meth:`locations`
lists where everything protected is now, for the sandbox to hide.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.config import Config
from tether.errors import ConfigError, PolicyDenied
from tether.security.paths import expand_home, is_within

__all__ = ["MAX_IDENTITIES", "Location", "ProtectedPaths", "runner_protected"]

log = logging.getLogger(__name__)

MAX_IDENTITIES = 4096
"""Descriptors held at most; beyond this every call is refused (fail closed)."""
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a protected directory or file is now."""

    path: str
    is_dir: bool
    label: str
    """The configured entry it came from, for messages."""


@dataclass(slots=True)
class _Held:
    fd: int
    label: str
    is_dir: bool


class ProtectedPaths:
    """The protected set: configured names plus the identities seen at those names."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        """``entries`` are ``(label, absolute path)``; duplicates are merged."""
        self._names: dict[str, str] = {}
        for label, path in entries:
            normal = os.path.normpath(path)
            self._names.setdefault(normal, label)
        self._held: dict[tuple[int, int], _Held] = {}
        self._real: dict[str, str] = {}
        self.refresh()

    @property
    def names(self) -> dict[str, str]:
        """Configured path -> label, as given (normalised)."""
        return dict(self._names)

    def refresh(self) -> None:
        """Look at every configured name once; remember any new identity found there."""
        for path, label in self._names.items():
            try:
                st = os.stat(path)
            except OSError:
                self._real.pop(path, None)
                continue
            if (st.st_dev, st.st_ino) not in self._held:
                self._hold(path, label)
            if path not in self._real:
                self._real[path] = os.path.realpath(path)

    def _hold(self, path: str, label: str) -> None:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in self._held:
            os.close(fd)
            return
        if len(self._held) >= MAX_IDENTITIES:
            self._prune()
        if len(self._held) >= MAX_IDENTITIES:
            os.close(fd)
            raise PolicyDenied(
                "too many protected directories to track; restart the runner",
                data={"reason": "protected_overflow"},
            )
        self._held[key] = _Held(fd, label, stat.S_ISDIR(st.st_mode))
        log.debug("= protecting", extra={"path": path, "label": label})

    def _prune(self) -> None:
        """Forget identities nothing can name any more (deleted directories and files)."""
        for key, held in list(self._held.items()):
            try:
                gone = os.fstat(held.fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:
                os.close(held.fd)
                del self._held[key]

    def protects(self, st: os.stat_result) -> str | None:
        """The label of the protected entry ``st`` is, or None."""
        return self.protects_key(st.st_dev, st.st_ino)

    def protects_key(self, dev: int, ino: int) -> str | None:
        """The label of the protected entry with this device and inode, or None."""
        held = self._held.get((dev, ino))
        return None if held is None else held.label

    def protected_name(self, path: str) -> str | None:
        """The label of the configured name that ``path`` (absolute, real) is at or under."""
        for name, label in self._names.items():
            real = self._real.get(name, name)
            if is_within(path, real) or is_within(path, name):
                return label
        return None

    def inside(self, path: str) -> str | None:
        """The label of a protected location that contains ``path`` (for workspace roots)."""
        found = self.protected_name(path)
        if found is not None:
            return found
        for where in self.locations():
            if where.is_dir and is_within(path, where.path):
                return where.label
        return None

    def locations(self) -> list[Location]:
        """Where every protected directory and file is now (names and moved identities)."""
        seen: dict[str, Location] = {}
        for held in self._held.values():
            path = _current_path(held.fd)
            if path is not None:
                seen.setdefault(path, Location(path, held.is_dir, held.label))
        for name, label in self._names.items():
            real = self._real.get(name)
            if real is not None and real not in seen:
                seen[real] = Location(real, os.path.isdir(real), label)
        return sorted(seen.values(), key=lambda loc: loc.path)

    def close(self) -> None:
        for held in self._held.values():
            with contextlib.suppress(OSError):
                os.close(held.fd)
        self._held.clear()


def _current_path(fd: int) -> str | None:
    """Where the file behind ``fd`` lives now (Linux ``/proc``), None if deleted or unknown."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if path.endswith(_DELETED) or not path.startswith("/"):
        return None
    return path


def _tether_defaults(env: Mapping[str, str], home: Path) -> list[tuple[str, str]]:
    """The user's default tether directories (XDG data, config and runtime)."""
    data = Path(env.get("XDG_DATA_HOME") or home / ".local/share") / "tether"
    conf = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "tether"
    out = [("tether data dir", str(data)), ("tether config dir", str(conf))]
    if env.get("XDG_RUNTIME_DIR"):
        out.append(("tether runtime dir", str(Path(env["XDG_RUNTIME_DIR"]) / "tether")))
    return out


def runner_protected(config: Config, *, env: Mapping[str, str], home: Path) -> ProtectedPaths:
    """Everything a runner protects: its own data, config and runtime dirs, the user's
    default tether dirs, a local gateway's dirs, ``denied_paths`` and ``hidden_paths``."""
    entries = [
        ("the runner's data dir", str(config.data_path)),
        ("the runner's config dir", str(config.config_path)),
        ("the runner's runtime dir", str(config.runtime_path)),
        *_tether_defaults(env, home),
    ]
    runner = config.runner
    for key, values in (
        ("gateway_dirs", runner.gateway_dirs),
        ("denied_paths", runner.denied_paths),
        ("hidden_paths", runner.hidden_paths),
    ):
        for value in values:
            path = expand_home(value, home)
            if not os.path.isabs(path):
                raise ConfigError(
                    f"runner.{key}: {value!r} must be an absolute path or start with ~"
                )
            entries.append((value if key != "gateway_dirs" else "the gateway's dirs", path))
    return ProtectedPaths(entries)
