"""Path arguments, checked by what they say: relative to a workspace, normalised, bounded.

:func:`split_path` turns a tool's path argument into components below a workspace root
without touching the file system: absolute paths are accepted only inside the root,
``..`` may not climb out of it, and NUL bytes, empty and overlong paths are refused
(``policy_denied`` with reason ``outside_workspace`` or ``invalid_path``).

That is only the first half of the check. The runner then opens those components one
at a time, each relative to the directory descriptor of the one before, never following
a symlink and refusing protected directories by what they are
(:mod:`tether.runner.fs`), so what the components name cannot be swapped underneath it.

:func:`compile_glob` and :func:`glob_match` match component tuples against
``**``-style patterns for the tools that enumerate files.
"""

from __future__ import annotations

import os
import posixpath
from fnmatch import fnmatchcase

from tether.errors import PolicyDenied, ToolFailed

__all__ = [
    "MAX_PATH_LENGTH",
    "Parts",
    "compile_glob",
    "expand_home",
    "glob_match",
    "is_within",
    "show_parts",
    "split_path",
    "under",
]

MAX_PATH_LENGTH = 4096
Parts = tuple[str, ...]
"""A path as components below a workspace root; ``()`` is the root itself."""


def is_within(path: str, root: str) -> bool:
    """True if ``path`` equals ``root`` or lies under it (both absolute and normalised)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


def expand_home(entry: str, home: str | os.PathLike[str]) -> str:
    """``entry`` with a leading ``~`` (or ``~user``) expanded and normalised; must be absolute."""
    if entry == "~" or entry.startswith("~/"):
        entry = os.fspath(home) + entry[1:]
    elif entry.startswith("~"):
        entry = os.path.expanduser(entry)
    return os.path.normpath(entry)


def under(parts: Parts, prefix: Parts) -> bool:
    """True if ``parts`` equals ``prefix`` or lies under it."""
    return parts[: len(prefix)] == prefix


def show_parts(parts: Parts) -> str:
    """Components as a workspace-relative POSIX path (``.`` for the root)."""
    return "/".join(parts) or "."


def _refuse(path_arg: str, reason: str, why: str) -> PolicyDenied:
    return PolicyDenied(f"path {path_arg!r} {why}", data={"path": path_arg, "reason": reason})


def split_path(path_arg: str, roots: tuple[str, ...]) -> Parts:
    """The components of ``path_arg`` below the workspace, or :class:`PolicyDenied`.

    ``roots`` are the absolute spellings of the workspace root an absolute argument may
    start with (as configured and as resolved). A relative argument is taken relative
    to the root.
    """
    if not path_arg:
        raise _refuse(path_arg, "invalid_path", "is empty")
    if "\0" in path_arg:
        raise _refuse(path_arg, "invalid_path", "contains a NUL byte")
    if len(path_arg) > MAX_PATH_LENGTH:
        raise _refuse(path_arg, "invalid_path", f"is longer than {MAX_PATH_LENGTH} characters")
    rel = path_arg
    if posixpath.isabs(path_arg):
        normal = posixpath.normpath(path_arg)
        for root in roots:
            if is_within(normal, root):
                rel = posixpath.relpath(normal, root)
                break
        else:
            raise _refuse(path_arg, "outside_workspace", "is outside the workspace")
    normal = posixpath.normpath(rel)
    if normal == ".":
        return ()
    if normal == ".." or normal.startswith("../"):
        raise _refuse(path_arg, "outside_workspace", "is outside the workspace")
    return tuple(normal.split("/"))


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
