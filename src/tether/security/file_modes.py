"""Private files and directories: what the gateway keeps is readable by its own user only.

:func:`private_dir` creates a directory 0700 or tightens an existing one; a directory
that belongs to another user is refused (:class:`~tether.errors.ConfigError`), since
tightening it would not make it ours. :func:`private_file` does the same for a file
(0600), and creates it empty when asked, so SQLite, which gives its ``-wal`` and ``-shm``
files the database file's mode, never makes them readable by others.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from tether.errors import ConfigError

__all__ = ["private_dir", "private_file"]

log = logging.getLogger(__name__)


def _check_owner(path: Path, st: os.stat_result, what: str) -> None:
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}); "
            "give it to this user or choose another location"
        )


def _tighten(path: Path, st: os.stat_result, mode: int, what: str) -> None:
    """Take group and other access away (to ``mode``), saying so."""
    if st.st_mode & 0o077:
        log.warning(
            "tightening the permissions of %s to %s",
            what,
            oct(mode)[2:].zfill(4),
            extra={"path": str(path), "mode": oct(st.st_mode & 0o777)},
        )
        path.chmod(mode)


def private_dir(path: Path, what: str = "directory") -> Path:
    """Create ``path`` (and parents) 0700, or tighten it to 0700 if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    _check_owner(path, st, what)
    _tighten(path, st, 0o700, what)
    return path


def private_file(path: Path, what: str = "file", *, create: bool = False) -> Path:
    """Tighten ``path`` to 0600 if it exists (create it empty, 0600, when ``create``)."""
    if create:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    _check_owner(path, st, what)
    _tighten(path, st, 0o600, what)
    return path
