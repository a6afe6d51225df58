"""``tether up``: the gateway and a local runner on this machine, for a first run.

The local runner is enrolled exactly like a remote one: ``runner.add`` over the local
socket, ``POST /enroll`` with the one-time code, then the ``tether runner`` daemon as a
child process dialing the gateway over loopback. Its identity lives in
``<data dir>/local-runner`` and is reused on the next ``tether up``. It reads the same
config file as the gateway (so ``[runner]`` settings apply), and the gateway hands it its
own data, config and runtime directories to protect: no tool call and no sandboxed
command can reach the admin token, the signing key, the ledger or the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli import context
from tether.cli.gateway_cmd import ListenOpt, load_gateway_config
from tether.cli.runner_cmd import WorkspaceOpt, parse_workspaces
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.app import Gateway
    from tether.config import Config

__all__ = ["up"]

LOCAL_RUNNER = "local"


def _default_workspace() -> dict[str, str]:
    cwd = Path.cwd()
    name = re.sub(r"[^A-Za-z0-9._-]", "-", cwd.name).strip("-.") or "here"
    return {name: str(cwd)}


async def _ensure_identity(
    config: Config, gateway: Gateway, runner_dir: Path, spaces: dict[str, str]
) -> None:
    """Reuse the local runner's identity, or enrol it again (same path as a remote runner)."""
    from tether.protocol.methods import RUNNER_ADD, RUNNER_LIST
    from tether.protocol.runners import RunnerAddParams
    from tether.protocol.system import Empty
    from tether.runner.enroll import enroll
    from tether.runner.identity import load_identity, save_identity
    from tether.transport.client import connect_ipc

    async with await connect_ipc(str(gateway.server.socket_path)) as admin:
        try:
            identity = load_identity(runner_dir)
        except ConfigError:
            identity = None
        if identity is not None:
            known = await admin.call(RUNNER_LIST, Empty())
            enrolled = any(
                r.id == identity.runner_id and r.status == "enrolled" for r in known.runners
            )
            if enrolled and identity.workspaces == spaces:
                if identity.gateway_url != gateway.server.url:  # e.g. another --listen port
                    identity.gateway_url = gateway.server.url
                    save_identity(runner_dir, identity)
                return
        added = await admin.call(
            RUNNER_ADD, RunnerAddParams(name=LOCAL_RUNNER, rotate=True, code_ttl=60)
        )
    await enroll(gateway.server.url, added.code, runner_dir, workspaces=spaces)


def _config_file(config: Config) -> str | None:
    """The config file the gateway read, if any (the runner reads the same one)."""
    explicit = context.current().config_file or os.environ.get("TETHER_CONFIG")
    if explicit:
        return str(Path(explicit).absolute())
    default = config.config_path / "config.toml"
    return str(default) if default.exists() else None


def _spawn_runner(config: Config, runner_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["TETHER_CONFIG_DIR"] = str(runner_dir)
    env.pop("TETHER_CONFIG", None)
    if (file := _config_file(config)) is not None:
        env["TETHER_CONFIG"] = file
    env["TETHER_RUNNER__GATEWAY_DIRS"] = ",".join(
        str(p) for p in (config.data_path, config.config_path, config.runtime_path)
    )
    env["TETHER_LOG_LEVEL"] = config.log_level
    env["TETHER_LOG_FORMAT"] = config.log_format
    return subprocess.Popen(
        [sys.executable, "-m", "tether", "runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


async def _wait_registered(
    gateway: Gateway, runner: subprocess.Popen[bytes], timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if any(live.name == LOCAL_RUNNER for live in gateway.registry.live.values()):
            return
        if runner.poll() is not None:
            raise ConfigError(
                f"the local runner exited with code {runner.returncode}; see the log above"
            )
        await asyncio.sleep(0.02)
    raise ConfigError("the local runner did not connect in time")


async def _stop_runner(runner: subprocess.Popen[bytes], grace: float) -> None:
    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
        for _ in range(int(grace / 0.05)):
            if runner.poll() is not None:
                return
            await asyncio.sleep(0.05)
        runner.kill()
        runner.wait()


async def _up(config: Config, spaces: dict[str, str]) -> None:
    from tether.app import Gateway

    cli = context.current()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(config)
    runner: subprocess.Popen[bytes] | None = None
    try:
        await gateway.start()
        runner_dir = config.data_path / "local-runner"
        await _ensure_identity(config, gateway, runner_dir, spaces)
        runner = _spawn_runner(config, runner_dir)
        await _wait_registered(gateway, runner, 30.0)
        info: dict[str, Any] = {
            "url": gateway.server.url,
            "ws": gateway.server.url.replace("http", "ws", 1) + "/ws",
            "socket": str(gateway.server.socket_path),
            "admin_token_file": str(gateway.admin_token_path),
            "runner": LOCAL_RUNNER,
            "workspaces": spaces,
        }
        cli.emit(
            info,
            f"tether is up\n  url        {info['url']}\n  socket     {info['socket']}\n"
            f"  token      {info['admin_token_file']}\n  runner     {LOCAL_RUNNER} "
            f"({', '.join(f'{k}={v}' for k, v in spaces.items())})\n"
            'Try: tether runs start "say hello" --follow   |   Ctrl-C stops everything.',
        )
        failed = asyncio.create_task(gateway.wait_failed(), name="up:gateway")
        stopping = asyncio.create_task(stop.wait(), name="up:signal")
        try:
            while not stop.is_set() and not failed.done():
                await asyncio.wait(
                    {failed, stopping}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if runner.poll() is not None and not stop.is_set():
                    sys.stderr.write(
                        f"the local runner exited ({runner.returncode}); restarting it\n"
                    )
                    runner = _spawn_runner(config, runner_dir)
        finally:
            failed.cancel()
            stopping.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if runner is not None:
            await _stop_runner(runner, config.runner.shutdown_grace + 2)
        await gateway.stop()
    if gateway.failure is not None:
        raise gateway.failure


def up(
    listen: ListenOpt = None,
    workspace: WorkspaceOpt = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Start only the gateway.")] = False,
) -> None:
    """Start everything on this machine: the gateway (SQLite) and a local runner, in the foreground.

    The local runner works in --workspace NAME=PATH (default: the current directory).
    Prints the URL and where the admin token is. Ctrl-C stops both.
    """
    config = load_gateway_config(listen, None, None, None)
    if no_runner:
        from tether.app import serve_gateway
        from tether.cli.gateway_cmd import ready_line

        context.run_async(serve_gateway(config, on_ready=ready_line))
        return
    spaces = parse_workspaces(workspace) or _default_workspace()
    for name, path in spaces.items():
        if not Path(path).is_dir():
            raise ConfigError(f"workspace {name!r}: {path} is not a directory")
    context.run_async(_up(config, spaces))
