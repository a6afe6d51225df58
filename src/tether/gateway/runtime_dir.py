"""The gateway's runtime directory: the Unix socket and ``gateway.json``.

The directory is created 0700 and must belong to us. A socket file left by a dead
gateway is removed only after a connect probe finds nobody listening; if a live
gateway answers, :class:`GatewayRunning` names its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, GatewayRunning

__all__ = [
    "GATEWAY_JSON",
    "SOCKET_NAME",
    "RuntimeDirLock",
    "claim_runtime_dir",
    "clear_stale_socket",
    "lock_runtime_dir",
    "prepare_runtime_dir",
    "read_gateway_json",
    "remove_runtime_files",
    "write_gateway_json",
]

SOCKET_NAME = "gateway.sock"
LOCK_NAME = "gateway.lock"
GATEWAY_JSON = "gateway.json"
_MAX_SOCKET_PATH = 107


def lock_runtime_dir(path: Path) -> int:
    """Take an exclusive lock on ``<runtime dir>/gateway.lock`` for the life of the process.

    Returns the file descriptor (keep it open). Raises GatewayRunning when another
    gateway holds it, so two gateways never share a runtime directory (or a ledger's
    dead-incarnation recovery)."""
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = read_gateway_json(path) or {}
        pid = info.get("pid")
        raise GatewayRunning(pid if isinstance(pid, int) else None) from None
    return fd


def prepare_runtime_dir(path: Path) -> Path:
    """Create the runtime dir 0700 (checking ownership) and return the socket path."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(f"runtime directory {path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    sock = path / SOCKET_NAME
    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path {sock} is longer than {_MAX_SOCKET_PATH} bytes; "
            "set TETHER_RUNTIME_DIR to a shorter directory"
        )
    return sock


def read_gateway_json(runtime_dir: Path) -> dict[str, Any] | None:
    """The running gateway's ``{pid, url, socket, version}``, or None."""
    try:
        data = json.loads((runtime_dir / GATEWAY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear_stale_socket(sock_path: Path) -> None:
    """Remove a leftover socket nobody listens on; raise GatewayRunning if someone does."""
    if not sock_path.exists() and not sock_path.is_symlink():
        return
    if not sock_path.is_symlink() and not stat.S_ISSOCK(sock_path.stat().st_mode):
        raise ConfigError(f"{sock_path} exists and is not a socket; move it out of the way")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(sock_path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        return
    except OSError as exc:
        raise ConfigError(f"cannot probe {sock_path}: {exc}") from exc
    finally:
        probe.close()
    info = read_gateway_json(sock_path.parent) or {}
    pid = info.get("pid")
    raise GatewayRunning(pid if isinstance(pid, int) else None)


def write_gateway_json(runtime_dir: Path, info: dict[str, Any]) -> Path:
    """Atomically write ``gateway.json`` (0600)."""
    path = runtime_dir / GATEWAY_JSON
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.write("\n")
    tmp.replace(path)
    return path


def remove_runtime_files(runtime_dir: Path, sock_path: Path) -> None:
    """Remove the socket and ``gateway.json`` if they are still ours."""
    info = read_gateway_json(runtime_dir)
    if info is None or info.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (runtime_dir / GATEWAY_JSON).unlink()
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()


@dataclass
class RuntimeDirLock:
    """A runtime directory this gateway holds (locked) until :meth:`release`."""

    path: Path
    socket_path: Path
    fd: int | None

    def release(self) -> None:
        """Remove the socket and ``gateway.json`` (if ours) and drop the lock."""
        if self.fd is None:
            return
        remove_runtime_files(self.path, self.socket_path)
        os.close(self.fd)
        self.fd = None


def claim_runtime_dir(path: Path) -> RuntimeDirLock:
    """Prepare and lock the runtime dir and clear a stale socket; GatewayRunning if a
    live gateway holds it."""
    sock = prepare_runtime_dir(path)
    fd = lock_runtime_dir(path)
    try:
        clear_stale_socket(sock)
    except BaseException:
        os.close(fd)
        raise
    return RuntimeDirLock(path, sock, fd)
