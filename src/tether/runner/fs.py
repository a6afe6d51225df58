"""Workspace file access that a concurrent writer cannot redirect.

A :class:`WorkspaceFS` is one call's view of one workspace. Every path is opened one
component at a time, each relative to the directory descriptor of the one before
(``openat`` with ``O_NOFOLLOW | O_DIRECTORY``), starting from a descriptor of the
workspace root. So:

- a symlink anywhere in the path is refused (``policy_denied``, reason ``symlink``),
  never followed;
- every directory on the way, and the file itself, is checked against the protected
  set by identity (device and inode), whatever it is called now (``denied_path``);
- a regular file with more than one hard link is refused for reading unless
  ``[runner] allow_hardlinks`` is set (``hardlink``): another link may sit outside the
  workspace or in a protected directory.

Everything done after that — stat, read, the temporary file of a write, the rename,
a listing — goes through those descriptors, so a directory swapped for a symlink in
the middle of a call (``renameat2(RENAME_EXCHANGE)``) has nothing left to redirect.
A missing path is ``tool_failed`` (reason ``not_found``); any other error while
resolving is ``policy_denied``, never ``internal``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tether.errors import PolicyDenied, TetherError, ToolFailed
from tether.runner.protected import ProtectedPaths
from tether.security.paths import Parts, show_parts, split_path, under

__all__ = ["MAX_WALK_DEPTH", "EntryKind", "WalkEntry", "WorkspaceFS"]

EntryKind = Literal["file", "dir", "symlink", "other"]
MAX_WALK_DEPTH = 256
"""Directories deeper than this below a walk's start are not entered (one fd per level)."""
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _shown(parts: Parts) -> str:
    return show_parts(parts).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _failed(message: str, reason: str, parts: Parts, **extra: object) -> ToolFailed:
    return ToolFailed(message, data={"reason": reason, "path": _shown(parts), **extra})


def _denied(message: str, reason: str, parts: Parts, **extra: object) -> PolicyDenied:
    return PolicyDenied(message, data={"reason": reason, "path": _shown(parts), **extra})


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One entry found by :meth:`WorkspaceFS.walk`; ``dir_fd`` is open until the walk moves on."""

    dir_fd: int
    name: str
    parts: Parts
    """Components below the workspace root."""
    kind: EntryKind


class WorkspaceFS:
    """Confined, race-free access to one workspace for one call. See the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        protected: ProtectedPaths,
        allowed: Sequence[str] | None = None,
        allow_hardlinks: bool = False,
        spellings: Sequence[str] = (),
        identity: tuple[int, int] | None = None,
    ) -> None:
        """``root`` is the workspace's real path; ``allowed`` narrows it to the
        workspace-relative paths a capability token names (``None``: all of it);
        ``spellings`` are other absolute names of the root absolute arguments may use;
        ``identity`` (device, inode) pins the root to the directory the runner started
        with, so a workspace whose path was redirected is refused."""
        self.root = os.path.realpath(root)
        self.identity = identity
        self.protected = protected
        self.allow_hardlinks = allow_hardlinks
        self._spellings = tuple(dict.fromkeys((self.root, *spellings)))
        self._allowed: tuple[Parts, ...] | None = None
        if allowed is not None:
            self._allowed = tuple(
                split_path(a, self._spellings) if a not in ("", ".") else () for a in allowed
            )

    # ---- names ---------------------------------------------------------------------

    def parts(self, path_arg: str) -> Parts:
        """Check a path argument by what it says (confined, allowed, not protected by name)."""
        parts = split_path(path_arg, self._spellings)
        if self._allowed is not None and not any(under(parts, a) for a in self._allowed):
            raise PolicyDenied(
                f"path {path_arg!r} is outside the paths this call is allowed to use",
                data={"path": path_arg, "reason": "outside_workspace"},
            )
        label = self.protected.protected_name(self.absolute(parts))
        if label is not None:
            raise PolicyDenied(
                f"path {path_arg!r} is inside protected path {label!r}",
                data={"path": path_arg, "reason": "denied_path"},
            )
        return parts

    def absolute(self, parts: Parts) -> str:
        return os.path.join(self.root, *parts)

    def writable_roots(self) -> tuple[str, ...]:
        """The absolute directories this call may write (the workspace or its allowed parts)."""
        if self._allowed is None:
            return (self.root,)
        return tuple(dict.fromkeys(self.absolute(a) for a in self._allowed))

    def check_root(self) -> None:
        """Refuse a workspace that is missing or lies inside a protected path."""
        label = self.protected.inside(self.root)
        if label is not None:
            raise PolicyDenied(
                f"workspace {self.root!r} is inside protected path {label!r}",
                data={"path": self.root, "reason": "denied_path"},
            )
        with self.directory(()):
            pass

    # ---- resolution ----------------------------------------------------------------

    @contextlib.contextmanager
    def directory(
        self, parts: Parts, *, create: bool = False, missing: str = "not_found"
    ) -> Iterator[int]:
        """A descriptor of the directory at ``parts`` (created on the way if ``create``)."""
        fd = self._open_root()
        try:
            for depth in range(len(parts)):
                step = self._step(fd, parts, depth, create=create, missing=missing)
                os.close(fd)
                fd = step
            yield fd
        finally:
            os.close(fd)

    def _open_root(self) -> int:
        try:
            fd = os.open(self.root, _O_DIR)
        except OSError as exc:
            raise ToolFailed(
                f"workspace {self.root!r} is not an accessible directory: {exc.strerror}",
                data={"path": self.root, "reason": "workspace_missing"},
            ) from exc
        try:
            st = os.fstat(fd)
            if self.identity is not None and (st.st_dev, st.st_ino) != self.identity:
                raise PolicyDenied(
                    f"workspace {self.root!r} is no longer the directory the runner started "
                    "with (moved or replaced); restart the runner to use it",
                    data={"path": self.root, "reason": "workspace_changed"},
                )
            self._check(st, ())
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step(self, fd: int, parts: Parts, depth: int, *, create: bool, missing: str) -> int:
        name, here = parts[depth], parts[: depth + 1]
        try:
            step = os.open(name, _O_DIR, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise _failed(
                    f"{_shown(parts)!r} does not exist"
                    + ("" if depth == len(parts) - 1 else f" ({_shown(here)!r} is missing)"),
                    missing,
                    parts,
                ) from None
            try:
                os.mkdir(name, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise self._unresolvable(exc, fd, here) from exc
            try:
                step = os.open(name, _O_DIR, dir_fd=fd)
            except OSError as exc:
                raise self._unresolvable(exc, fd, here) from exc
        except OSError as exc:
            raise self._unresolvable(exc, fd, here) from exc
        try:
            self._check(os.fstat(step), here)
        except BaseException:
            os.close(step)
            raise
        return step

    def _unresolvable(
        self, exc: OSError, fd: int, here: Parts, *, want_dir: bool = True
    ) -> TetherError:
        try:
            st = os.stat(here[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            return _denied(
                f"{_shown(here)!r} is a symlink; tools never follow symlinks", "symlink", here
            )
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and st is not None:
            if stat.S_ISDIR(st.st_mode) or not want_dir:
                return _denied(f"{_shown(here)!r} changed while being opened", "changed", here)
            return _failed(f"{_shown(here)!r} is not a directory", "not_a_directory", here)
        return _denied(
            f"{_shown(here)!r} cannot be resolved: {exc.strerror or exc}",
            "unresolvable",
            here,
            errno=exc.errno,
        )

    def _check(self, st: os.stat_result, parts: Parts) -> None:
        label = self.protected.protects(st)
        if label is not None:
            raise _denied(f"{_shown(parts)!r} is protected path {label!r}", "denied_path", parts)

    def entry_stat(self, dir_fd: int, parts: Parts) -> os.stat_result | None:
        """``lstat`` of the last component relative to ``dir_fd``; None if it does not exist."""
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unresolvable(exc, dir_fd, parts) from exc
        if stat.S_ISLNK(st.st_mode):
            raise _denied(
                f"{_shown(parts)!r} is a symlink; tools never follow symlinks", "symlink", parts
            )
        self._check(st, parts)
        return st

    def open_file(self, parts: Parts) -> tuple[int, os.stat_result]:
        """Open a regular file for reading: ``(fd, stat)``; the caller closes ``fd``."""
        if not parts:
            raise _failed("the workspace root is a directory; use list_dir", "is_a_directory", ())
        with self.directory(parts[:-1]) as dir_fd:
            return self.open_in(dir_fd, parts)

    def open_in(self, dir_fd: int, parts: Parts) -> tuple[int, os.stat_result]:
        """Open the regular file ``parts[-1]`` of the directory ``dir_fd`` for reading."""
        before = self.entry_stat(dir_fd, parts)
        if before is None:
            raise _failed(f"{_shown(parts)!r} does not exist", "not_found", parts)
        self._regular(before, parts)
        try:
            fd = os.open(parts[-1], _O_READ, dir_fd=dir_fd)
        except FileNotFoundError:
            raise _failed(f"{_shown(parts)!r} does not exist", "not_found", parts) from None
        except OSError as exc:
            raise self._unresolvable(exc, dir_fd, parts, want_dir=False) from exc
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise _denied(f"{_shown(parts)!r} changed while being opened", "changed", parts)
        return fd, st

    def _regular(self, st: os.stat_result, parts: Parts) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise _failed(
                f"{_shown(parts)!r} is a directory; use list_dir", "is_a_directory", parts
            )
        if not stat.S_ISREG(st.st_mode):
            raise _failed(f"{_shown(parts)!r} is not a regular file", "not_a_file", parts)
        if st.st_nlink > 1 and not self.allow_hardlinks:
            raise _denied(
                f"{_shown(parts)!r} has {st.st_nlink} hard links; another may lie outside the "
                "workspace, so it is not read (set [runner] allow_hardlinks to allow)",
                "hardlink",
                parts,
            )

    def readable(self, dir_fd: int, parts: Parts) -> bool:
        """True if :meth:`open_in` would open the file (for walks that skip, not fail)."""
        try:
            fd, _ = self.open_in(dir_fd, parts)
        except TetherError:
            return False
        os.close(fd)
        return True

    def replace_file(self, dir_fd: int, parts: Parts, data: bytes, mode: int | None) -> None:
        """Write ``data`` to ``parts[-1]`` in ``dir_fd`` atomically (temp file, fsync, rename).

        ``mode`` is kept for an existing file; a new one gets 0666 minus the umask. I/O
        errors (no space, read-only file system) are raised as :class:`OSError`."""
        name = parts[-1]
        tmp = f".{name[:100]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, _O_CREATE, 0o666 if mode is None else 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise

    # ---- enumeration ---------------------------------------------------------------

    def scan(self, dir_fd: int) -> list[os.DirEntry[str]]:
        """The entries of a directory, by name (bytes order), protected ones left out."""
        dev = os.fstat(dir_fd).st_dev
        with os.scandir(dir_fd) as it:
            entries = [e for e in it if self.protected.protects_key(dev, e.inode()) is None]
        entries.sort(key=lambda e: os.fsencode(e.name))
        return entries

    def walk(
        self,
        start: Parts,
        *,
        max_depth: int | None = None,
        skip_names: frozenset[str] = frozenset(),
        check: Callable[[], None] | None = None,
    ) -> Iterator[WalkEntry]:
        """Entries under the directory ``start``, depth first, by name.

        Symlinks are yielded as ``symlink`` and never followed; protected entries and
        ``skip_names`` are neither yielded nor entered; directories that cannot be
        opened are skipped. ``check`` runs before each directory is read (it may raise).
        """
        depth_cap = MAX_WALK_DEPTH if max_depth is None else min(max_depth, MAX_WALK_DEPTH)
        with self.directory(start) as top:
            stack: list[tuple[int, Parts, Iterator[os.DirEntry[str]]]] = []
            try:
                stack.append((os.dup(top), start, iter(self._listed(top, check))))
                while stack:
                    fd, parts, it = stack[-1]
                    entry = next(it, None)
                    if entry is None:
                        os.close(fd)
                        stack.pop()
                        continue
                    if entry.name in skip_names:
                        continue
                    here = (*parts, entry.name)
                    kind = _kind(entry)
                    if kind is None:
                        continue
                    yield WalkEntry(fd, entry.name, here, kind)
                    if kind == "dir" and len(here) - len(start) < depth_cap:
                        child = self._enter(fd, here)
                        if child is not None:
                            stack.append((child, here, iter(self._listed(child, check))))
            finally:
                for fd, _, _ in stack:
                    os.close(fd)

    def _listed(self, fd: int, check: Callable[[], None] | None) -> list[os.DirEntry[str]]:
        if check is not None:
            check()
        try:
            return self.scan(fd)
        except OSError:
            return []

    def _enter(self, fd: int, parts: Parts) -> int | None:
        try:
            child = os.open(parts[-1], _O_DIR, dir_fd=fd)
        except OSError:
            return None  # swapped for a symlink or removed since it was listed
        if self.protected.protects(os.fstat(child)) is not None:
            os.close(child)
            return None
        return child


def _kind(entry: os.DirEntry[str]) -> EntryKind | None:
    try:
        if entry.is_symlink():
            return "symlink"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        return None
    return "other"
