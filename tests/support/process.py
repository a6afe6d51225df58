"""Real `tether` processes for tests: start, wait until ready, stop, and read their output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.users import LoginUser

SCALE = float(os.environ.get("TETHER_TEST_SCALE", "1"))


@contextlib.contextmanager
def short_tempdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tether_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose every tether directory lives under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "XDG_"))}
    env.update(
        {
            "HOME": str(home / "home"),
            "TETHER_DATA_DIR": str(home / "data"),
            "TETHER_RUNTIME_DIR": str(home / "run"),
            "TETHER_CONFIG_DIR": str(home / "config"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    (home / "home").mkdir(exist_ok=True)
    env.update(extra or {})
    return env


def run_cli(
    home: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    user: LoginUser | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `tether ARGS` to completion (as ``user`` when given)."""
    full = tether_env(home, env)
    python, kwargs = sys.executable, {}
    if user is not None:
        python, full, kwargs = user.python, user.env(full), user.popen_kwargs()
    return subprocess.run(
        [python, "-m", "tether", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout * SCALE,
        check=False,
        **kwargs,
    )


class TetherProcess:
    """A long-running `tether ...` subprocess that prints one JSON line when it is ready."""

    kind = "tether"

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        args: tuple[str, ...],
        user: LoginUser | None = None,
    ) -> None:
        self.home = home
        self.user = user
        self.env = env if user is None else user.env(env)
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.stderr_path = home / f"{self.kind}-{time.monotonic_ns()}.err"

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def python(self) -> str:
        return sys.executable if self.user is None else self.user.python

    def start(self, timeout: float = 20.0, *, wait: bool = True) -> None:
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
            **({} if self.user is None else self.user.popen_kwargs()),
        )
        if not wait:
            return
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout * SCALE
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line or self.proc.poll() is not None:
                break
        if not line:
            self.proc.kill()
            raise RuntimeError(f"{self.kind} did not start:\n{self.stderr()}")
        self.info = json.loads(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()
        except OSError:
            return ""

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout * SCALE)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if hasattr(self, "_stderr"):
            self._stderr.close()


class GatewayProcess(TetherProcess):
    """A `tether gateway` subprocess with its own data and runtime directories."""

    kind = "gateway"

    def __init__(
        self,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        user: LoginUser | None = None,
    ) -> None:
        super().__init__(home, tether_env(home, env), args, user)

    def command(self) -> list[str]:
        listen = () if "--listen" in self.args else ("--listen", "127.0.0.1:0")
        return [self.python, "-m", "tether", "--json", "gateway", *listen, *self.args]

    def start(self, timeout: float = 20.0, *, wait: bool = True) -> None:
        super().start(timeout, wait=wait)
        if wait:
            self.info = {**json.loads((self.runtime_dir / "gateway.json").read_text()), **self.info}

    @property
    def runtime_dir(self) -> Path:
        return Path(self.env["TETHER_RUNTIME_DIR"])

    @property
    def data_dir(self) -> Path:
        return Path(self.env["TETHER_DATA_DIR"])

    @property
    def socket(self) -> str:
        return str(self.runtime_dir / "gateway.sock")

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()


class RunnerProcess(TetherProcess):
    """A `tether runner` subprocess with its own config dir (its identity lives there)."""

    kind = "runner"

    def __init__(
        self,
        home: Path,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        user: LoginUser | None = None,
        login: bool = False,
    ) -> None:
        """``login``: run as on a desktop, with only HOME set (``home`` is that HOME), so
        the identity lives in the default ``~/.config/tether``."""
        self.name = name
        if login:
            self.config_dir = home / ".config" / "tether"
            full = login_env(home, env)
        else:
            self.config_dir = home / f"runner-{name}"
            full = tether_env(home, {"TETHER_CONFIG_DIR": str(self.config_dir), **(env or {})})
        super().__init__(home, full, args, user)

    def command(self) -> list[str]:
        return [self.python, "-m", "tether", "--json", "runner", *self.args]

    def enroll(
        self, gateway: GatewayProcess, workspaces: Mapping[str, Path], *, rotate: bool = False
    ) -> None:
        add = ["--json", "runners", "add", self.name] + (["--rotate"] if rotate else [])
        added = run_cli(gateway.home, *add, user=gateway.user)
        assert added.returncode == 0, added.stderr
        code = json.loads(added.stdout)["code"]
        spaces = [f"--workspace={k}={v}" for k, v in workspaces.items()]
        done = subprocess.run(
            [
                self.python,
                "-m",
                "tether",
                "runner",
                "enroll",
                "--gateway",
                gateway.url,
                "--code",
                code,
                *spaces,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30 * SCALE,
            check=False,
            **({} if self.user is None else self.user.popen_kwargs()),
        )
        assert done.returncode == 0, done.stderr


def login_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A desktop-like environment: only HOME (and PATH, LANG), so every tether directory is
    its default under HOME (``~/.local/share/tether``, ``~/.config/tether``)."""
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


class UpProcess(TetherProcess):
    """`tether up` (gateway and local runner) in a login-like environment under ``home``."""

    kind = "up"

    def __init__(
        self,
        home: Path,
        workspaces: Mapping[str, Path],
        *,
        env: Mapping[str, str] | None = None,
        user: LoginUser | None = None,
        log: Path | None = None,
    ) -> None:
        self.workspaces = dict(workspaces)
        super().__init__(home, login_env(home, env), (), user)
        if log is not None:
            self.stderr_path = log

    def command(self) -> list[str]:
        spaces = [f"--workspace={k}={v}" for k, v in self.workspaces.items()]
        return [self.python, "-m", "tether", "--json", "up", "--listen", "127.0.0.1:0", *spaces]

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "tether"

    @property
    def admin_token(self) -> str:
        return Path(self.info["admin_token_file"]).read_text().strip()

    @property
    def ws_url(self) -> str:
        return str(self.info["ws"])
