"""Path policy: which files a tool call may touch.

A :class:`PathPolicy` confines tool arguments to one workspace, optionally narrowed to
the roots a capability token allows, and keeps denied paths (``~/.ssh`` and friends)
out of reach even inside the workspace. Paths are resolved the way the kernel will see
them (``os.path.realpath``: symlinks followed, ``..`` collapsed, not-yet-existing tails
kept), so a symlink cannot smuggle an access out of the workspace.

:meth:`PathPolicy.walk` lists a tree without following symlinks and without entering
denied directories, for tools that enumerate files (glob, grep); :func:`compile_glob`
and :func:`glob_match` match the paths it yields against ``**``-style patterns.

Checks happen before the file is opened; a process that can rewrite the workspace
concurrently can still race them (time of check vs. time of use). The sandbox, not this
module, is the boundary against such a process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from tether.errors import PolicyDenied, ToolFailed

__all__ = [
    "MAX_PATH_LENGTH",
    "EntryKind",
    "PathPolicy",
    "WalkEntry",
    "compile_glob",
    "glob_match",
    "is_within",
]

MAX_PATH_LENGTH = 4096
EntryKind = Literal["file", "dir", "symlink", "other"]


def is_within(path: str, root: str) -> bool:
    """True if ``path`` equals ``root`` or lies under it (both absolute and normalised)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


def _bad_glob(pattern: str, why: str) -> ToolFailed:
    return ToolFailed(f"glob {pattern!r} {why}", data={"reason": "invalid_pattern"})


def compile_glob(pattern: str) -> tuple[tuple[str, ...], bool]:
    """Split a relative glob into components; also say whether it matches directories only.

    Raises ``ToolFailed`` (reason ``invalid_pattern``) for absolute patterns and ``..``.
    """
    if "\0" in pattern or pattern.startswith("/"):
        raise _bad_glob(pattern, "must be a relative pattern")
    parts: list[str] = []
    for part in pattern.split("/"):
        if part == "..":
            raise _bad_glob(pattern, "must not contain '..'")
        if part in ("", ".") or (part == "**" and parts[-1:] == ["**"]):
            continue
        parts.append(part)
    if not parts:
        raise _bad_glob(pattern, "matches nothing")
    return tuple(parts), pattern.endswith("/") or parts[-1] == "**"


def glob_match(parts: tuple[str, ...], rel: tuple[str, ...]) -> bool:
    """Match path components against glob components (``**`` spans any number of them)."""
    if not parts:
        return not rel
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(glob_match(rest, rel[i:]) for i in range(len(rel) + 1))
    return bool(rel) and fnmatchcase(rel[0], head) and glob_match(rest, rel[1:])


def _refuse(path_arg: str, reason: str, why: str) -> PolicyDenied:
    return PolicyDenied(f"path {path_arg!r} {why}", data={"path": path_arg, "reason": reason})


@dataclass(frozen=True)
class WalkEntry:
    """One entry found by :meth:`PathPolicy.walk`."""

    path: Path
    """Absolute path (its directory part has no symlinks)."""
    rel: tuple[str, ...]
    """Components relative to the walk's start."""
    kind: EntryKind


@dataclass(frozen=True)
class PathPolicy:
    """Resolves tool path arguments and refuses anything outside the allowed area.

    ``denied`` entries may start with ``~`` (expanded with ``home``); relative entries
    are taken relative to the workspace root. ``allowed_roots`` (relative ones are
    relative to the workspace) narrow the workspace further; ``None`` means the whole
    workspace.
    """

    workspace_root: Path
    denied: Sequence[str] = ()
    allowed_roots: Sequence[Path] | None = None
    home: Path = field(default_factory=Path.home)
    root: str = field(init=False, repr=False)
    """Realpath of the workspace root."""
    _denied: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    _allowed: tuple[str, ...] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.workspace_root.is_absolute():
            raise ValueError(f"workspace root must be absolute: {self.workspace_root}")
        root = os.path.realpath(self.workspace_root)
        denied: list[tuple[str, str]] = []
        for entry in self.denied:
            expanded = self._expand(entry, root)
            real = os.path.realpath(expanded)
            for candidate in dict.fromkeys((expanded, real)):
                denied.append((candidate, entry))
        allowed = None
        if self.allowed_roots is not None:
            allowed = tuple(
                os.path.realpath(os.path.join(root, os.fspath(r))) for r in self.allowed_roots
            )
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "_denied", tuple(denied))
        object.__setattr__(self, "_allowed", allowed)

    def _expand(self, entry: str, root: str) -> str:
        if entry == "~" or entry.startswith("~/"):
            entry = os.fspath(self.home) + entry[1:]
        elif entry.startswith("~"):
            entry = os.path.expanduser(entry)
        return os.path.normpath(os.path.join(root, entry))

    @property
    def denied_paths(self) -> tuple[Path, ...]:
        """Every denied path, as written (expanded) and resolved, without duplicates."""
        return tuple(Path(p) for p in dict.fromkeys(p for p, _ in self._denied))

    @property
    def writable_roots(self) -> tuple[Path, ...]:
        """The roots this policy allows (the workspace, or the allowed roots inside it)."""
        if self._allowed is None:
            return (Path(self.root),)
        return tuple(Path(a) for a in self._allowed if is_within(a, self.root))

    def check_root(self) -> Path:
        """Check the workspace itself is usable and not denied; return its realpath."""
        denied = self.denied_entry(self.root)
        if denied is not None:
            raise PolicyDenied(
                f"workspace {str(self.workspace_root)!r} is inside denied path {denied!r}",
                data={"path": str(self.workspace_root), "reason": "denied_path"},
            )
        if not os.path.isdir(self.root):
            raise ToolFailed(
                f"workspace {str(self.workspace_root)!r} does not exist or is not a directory",
                data={"path": str(self.workspace_root), "reason": "workspace_missing"},
            )
        return Path(self.root)

    def denied_entry(self, real: str) -> str | None:
        """The denied entry (as configured) that ``real`` equals or lies under, if any."""
        for path, entry in self._denied:
            if is_within(real, path):
                return entry
        return None

    def allows(self, real: str) -> bool:
        """True if an already-resolved absolute path passes every rule."""
        if not is_within(real, self.root):
            return False
        if self._allowed is not None and not any(is_within(real, a) for a in self._allowed):
            return False
        return self.denied_entry(real) is None

    def resolve(self, path_arg: str) -> Path:
        """Resolve a tool's path argument, or raise :class:`PolicyDenied` saying why."""
        if not path_arg:
            raise _refuse(path_arg, "invalid_path", "is empty")
        if "\0" in path_arg:
            raise _refuse(path_arg, "invalid_path", "contains a NUL byte")
        if len(path_arg) > MAX_PATH_LENGTH:
            raise _refuse(path_arg, "invalid_path", f"is longer than {MAX_PATH_LENGTH} characters")
        lexical = os.path.normpath(os.path.join(self.root, path_arg))
        real = os.path.realpath(lexical)
        if not is_within(real, self.root):
            if is_within(lexical, self.root):
                raise _refuse(
                    path_arg, "outside_workspace", "escapes the workspace through a symlink"
                )
            raise _refuse(path_arg, "outside_workspace", "is outside the workspace")
        if self._allowed is not None and not any(is_within(real, a) for a in self._allowed):
            raise _refuse(
                path_arg, "outside_workspace", "is outside the paths this call is allowed to use"
            )
        denied = self.denied_entry(real)
        if denied is None:
            denied = self.denied_entry(lexical)
        if denied is not None:
            raise _refuse(path_arg, "denied_path", f"is inside denied path {denied!r}")
        return Path(real)

    def relative(self, path: Path | str) -> str:
        """``path`` (inside the workspace) relative to the workspace root, ``.`` for the root."""
        rel = os.path.relpath(path, self.root)
        return "." if rel == os.curdir else Path(rel).as_posix()

    def walk(
        self,
        start: Path,
        *,
        max_depth: int | None = None,
        skip_names: frozenset[str] = frozenset(),
        check: Callable[[], None] | None = None,
    ) -> Iterator[WalkEntry]:
        """Yield entries under the resolved directory ``start``, depth first, sorted by name.

        Symlinks are yielded as ``symlink`` and never followed; denied entries and names in
        ``skip_names`` are neither yielded nor entered; unreadable directories are skipped.
        ``check`` runs before each directory is read (it may raise to stop the walk).
        """
        stack: list[Iterator[WalkEntry]] = [self._scan(start, (), skip_names, check)]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            yield entry
            if entry.kind == "dir" and (max_depth is None or len(entry.rel) < max_depth):
                stack.append(self._scan(entry.path, entry.rel, skip_names, check))

    def _scan(
        self,
        directory: Path,
        rel: tuple[str, ...],
        skip_names: frozenset[str],
        check: Callable[[], None] | None,
    ) -> Iterator[WalkEntry]:
        if check is not None:
            check()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError:
            return
        for entry in entries:
            if entry.name in skip_names:
                continue
            path = os.path.join(directory, entry.name)
            if self.denied_entry(path) is not None:
                continue
            kind: EntryKind
            try:
                if entry.is_symlink():
                    kind = "symlink"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
            except OSError:
                continue
            yield WalkEntry(Path(path), (*rel, entry.name), kind)
