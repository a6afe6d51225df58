"""Fixtures for the security suite: an ordinary user, homes it owns, tool calls as admin.

Every test here drives real gateway, runner and shell processes. bubblewrap must work
(CI installs it): a missing sandbox fails these tests, it never skips them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import GatewayProcess, RunnerProcess, short_tempdir
from tests.support.users import LoginUser, login_user
from tether.errors import TetherError
from tether.protocol.methods import TOOL_CALL
from tether.protocol.runners import ToolCallParams
from tether.runner.sandbox import detect
from tether.transport.client import RpcClient


@pytest.fixture(scope="session")
def login() -> LoginUser:
    """The unprivileged user gateway and runner processes run as (see tests/support/users)."""
    return login_user()


@pytest.fixture(scope="session", autouse=True)
def sandbox_works() -> None:
    info = detect("auto")
    assert info.active, f"the security suite needs a working bubblewrap: {info.reason}"


@pytest.fixture
def user_home(login: LoginUser) -> Iterator[Path]:
    """A HOME for the login user, owned by it. Not under /tmp: every sandbox gets a
    private /tmp, which would hide a home there for reasons unrelated to the test."""
    top = Path(tempfile.mkdtemp(prefix="tt-", dir="/var/tmp"))
    os.chmod(top, 0o755)  # noqa: S103 - let the login user reach its home below
    path = top / "u"
    path.mkdir()
    login.own(path)
    try:
        yield path
    finally:
        shutil.rmtree(top, ignore_errors=True)


def own(login: LoginUser, *paths: Path) -> None:
    login.own(*paths)


async def tool(c: RpcClient, runner: str, name: str, **args: Any) -> dict[str, Any]:
    """Call a tool as admin and return its decoded result (raises TetherError on refusal)."""
    out = await c.call(
        TOOL_CALL, ToolCallParams(runner=runner, tool=name, args=args, timeout=60), timeout=90
    )
    result: dict[str, Any] = json.loads(bytes(out.result))
    return result


async def refusal(c: RpcClient, runner: str, name: str, **args: Any) -> TetherError:
    """Call a tool that must be refused; return the error (fails the test if it ran)."""
    try:
        result = await tool(c, runner, name, **args)
    except TetherError as exc:
        return exc
    raise AssertionError(f"{name} {args} was not refused: {result}")


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Every path under ``root`` (outside ``skip``) with a digest of what it is."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames + filenames:
            path = here / name
            if path in skip:
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir" if path.is_dir() else "other"
    return out


@pytest.fixture
def rig(home: Path) -> Iterator[Rig]:
    """Start a gateway (SQLite) and runners on it; everything is stopped afterwards."""
    made = Rig(home)
    try:
        yield made
    finally:
        made.stop()


class Rig:
    """A real gateway and real runner processes under one temp home, as root (the default)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        # runs' tool calls go unasked (the deny list still applies): what these tests
        # attack is the runner and its sandbox, not the approval path
        self.gateway = GatewayProcess(home, env={"TETHER_RUNS__DEFAULT_MODE": "auto"})
        self.gateway.start()
        self.runners: list[RunnerProcess] = []

    def runner(
        self, workspaces: dict[str, Path], env: dict[str, str] | None = None, name: str = "box"
    ) -> RunnerProcess:
        runner = RunnerProcess(self.home, name, env=env)
        runner.enroll(self.gateway, workspaces)
        runner.start()
        self.runners.append(runner)
        return runner

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        self.gateway.stop()


@contextlib.contextmanager
def desktop_runner(
    login: LoginUser, user_home: Path, workspaces: dict[str, Path]
) -> Iterator[tuple[GatewayProcess, RunnerProcess]]:
    """A gateway with its own dirs and a runner as on a desktop (only HOME set, identity in
    ``~/.config/tether``), both as the login user; ``user_home`` is given to that user."""
    login.own(user_home)
    with short_tempdir() as gw_home:
        os.chmod(gw_home, 0o755)  # noqa: S103 - the login user runs the gateway in it
        login.own(gw_home)
        gateway = GatewayProcess(gw_home, user=login)
        gateway.start()
        runner = RunnerProcess(user_home, "laptop", login=True, user=login)
        try:
            runner.enroll(gateway, workspaces)
            runner.start()
            yield gateway, runner
        finally:
            runner.stop()
            gateway.stop()
