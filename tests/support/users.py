"""Run tether processes as an ordinary user with a login session's limits.

Some guarantees depend on who runs the gateway and the runner: same-uid IPC, file modes,
the open-file limit. CI runs as root, where those checks would prove nothing, so tests
that depend on them start their processes through :func:`login_user`:

- not root: the current user, as it is;
- root: the unprivileged user ``tether-ci`` (created here if missing, with no home and
  no login shell), and a Python interpreter that user can execute. When the project's
  interpreter lives somewhere the user cannot reach (a pyenv under ``/root``), the
  system's ``python3.X`` of the same version runs the same code and packages through
  ``PYTHONPATH``.

Either way the processes get ``umask 022`` and an open-file soft limit of 1,024, as a
desktop login session has.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pwd
import resource
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LOGIN_NOFILE", "LoginUser", "login_user"]

USER_NAME = "tether-ci"
LOGIN_NOFILE = 1024
"""The soft open-file limit of a login session (the hard limit is left as it is)."""
_SRC = Path(__file__).resolve().parents[2] / "src"
_PROBE = "import tether, aiohttp, msgspec, cryptography, sqlalchemy"


@dataclass(frozen=True)
class LoginUser:
    """Who test processes run as, and how to start Python as them."""

    name: str
    uid: int
    gid: int
    python: str
    pythonpath: str | None
    """Set when the system interpreter stands in for the project's."""
    switch: bool
    """True when processes must change user (the tests run as root)."""

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` plus what the interpreter needs to find tether."""
        env = dict(base)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def popen_kwargs(self, nofile: int = LOGIN_NOFILE) -> dict[str, Any]:
        """Keyword arguments for :class:`subprocess.Popen`: user, umask and limits."""
        kwargs: dict[str, Any] = {"umask": 0o022, "preexec_fn": _limits(nofile)}
        if self.switch:
            kwargs.update(user=self.uid, group=self.gid, extra_groups=[])
        return kwargs

    def own(self, *paths: Path) -> None:
        """Give ``paths`` (recursively) to this user; a no-op when not switching."""
        if not self.switch:
            return
        for top in paths:
            os.chown(top, self.uid, self.gid)
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


def _limits(nofile: int) -> Callable[[], None]:
    def apply() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

    return apply


def _ensure_user() -> pwd.struct_passwd:
    with open("/tmp/tether-ci-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(USER_NAME)
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                USER_NAME,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot create the test user {USER_NAME}: {done.stderr.strip()}")
        return pwd.getpwnam(USER_NAME)


def _works(entry: pwd.struct_passwd, python: str, pythonpath: str | None) -> bool:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    try:
        done = subprocess.run(
            [python, "-c", _PROBE],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            env=env,
            cwd="/",
            capture_output=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


@functools.cache
def login_user() -> LoginUser:
    """The user test processes that depend on ordinary rights run as (see the module doc)."""
    if os.geteuid() != 0:
        name = pwd.getpwuid(os.getuid()).pw_name
        return LoginUser(name, os.getuid(), os.getgid(), sys.executable, None, switch=False)
    entry = _ensure_user()
    if _works(entry, sys.executable, None):
        return LoginUser(USER_NAME, entry.pw_uid, entry.pw_gid, sys.executable, None, switch=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/bin")
    pythonpath = os.pathsep.join([str(_SRC), sysconfig.get_paths()["purelib"]])
    if system is not None and _works(entry, system, pythonpath):
        return LoginUser(USER_NAME, entry.pw_uid, entry.pw_gid, system, pythonpath, switch=True)
    raise RuntimeError(
        f"the test user {USER_NAME} cannot run tether: neither {sys.executable} nor a system "
        f"{version} with PYTHONPATH={pythonpath} works for it. Make the checkout and its "
        "virtualenv readable by other users (`.ci/run` does), or run the tests as an ordinary user."
    )
