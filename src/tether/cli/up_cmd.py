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

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli import context
from tether.cli.console_cmd import open_link
from tether.cli.gateway_cmd import ListenOpt, load_gateway_config
from tether.cli.help import examples
from tether.cli.runner_cmd import parse_workspaces
from tether.cli.stop import StopSignals
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.app import Gateway
    from tether.config import Config

__all__ = ["register", "up"]

LOCAL_RUNNER = "local"
WorkspaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--workspace",
        "-w",
        metavar="NAME=PATH",
        help="A workspace of the local runner as NAME=PATH (repeatable; default: the "
        "current directory).",
        show_default=False,
    ),
]
ACCESS_LOGGER = "tether.access"


def _default_workspace() -> dict[str, str]:
    cwd = Path.cwd()
    name = re.sub(r"[^A-Za-z0-9._-]", "-", cwd.name).strip("-.") or "here"
    return {name: str(cwd)}


class _AsDebug(logging.Filter):
    """Relabel a record as DEBUG (the gateway logs access lines at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_access_log(level: str) -> None:
    """Under ``tether up`` a request's access line (a runner's heartbeat is one) is a debug
    record: shown with ``--log-level debug``, else not even built."""
    access = logging.getLogger(ACCESS_LOGGER)
    if level == "debug":
        access.addFilter(_AsDebug())
    else:
        access.setLevel(logging.WARNING)


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


def local_defaults(config: Config, spaces: dict[str, str] | None) -> Config:
    """Under ``tether up`` new sessions use the local runner (and its workspace, when it
    has one) and the ``openai`` agent when a model is configured (``[agents.openai]
    model``), else the ``operator`` agent, unless the config names others."""
    import msgspec

    runs = config.runs
    changes: dict[str, str] = {}
    if runs.default_agent == "script":  # the built-in default is a test fixture
        changes["default_agent"] = "openai" if config.agents.openai.model else "operator"
    if spaces and runs.default_runner is None:
        changes["default_runner"] = LOCAL_RUNNER
        if len(spaces) == 1 and runs.default_workspace is None:
            changes["default_workspace"] = next(iter(spaces))
    if not changes:
        return config
    return msgspec.structs.replace(config, runs=msgspec.structs.replace(runs, **changes))


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
    # its own session: a Ctrl-C in the terminal reaches only `tether up`, which stops it
    return subprocess.Popen(
        [sys.executable, "-m", "tether", "runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


async def _wait_registered(
    gateway: Gateway, runner: subprocess.Popen[bytes], signals: StopSignals, timeout: float
) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not signals.requested:
        if any(live.name == LOCAL_RUNNER for live in gateway.registry.live.values()):
            return
        if runner.poll() is not None:
            raise ConfigError(
                f"the local runner exited with code {runner.returncode}; see the log above"
            )
        await asyncio.sleep(0.02)
    if not signals.requested:
        raise ConfigError("the local runner did not connect in time")


async def _stop_runner(runner: subprocess.Popen[bytes], grace: float) -> None:
    import asyncio

    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)  # it finishes running calls within its grace
        for _ in range(int(grace / 0.05)):
            if runner.poll() is not None:
                return
            await asyncio.sleep(0.05)
        runner.kill()
        runner.wait()


def _announce(gateway: Gateway, spaces: dict[str, str] | None, console: str, link: str) -> None:
    server = gateway.server
    agent = gateway.config.runs.default_agent
    info: dict[str, Any] = {
        "url": server.url,
        "console": console,
        "login_link": link,
        "ws": server.url.replace("http", "ws", 1) + "/ws",
        "socket": str(server.socket_path),
        "admin_token_file": str(gateway.admin_token_path),
        "runner": LOCAL_RUNNER if spaces is not None else None,
        "workspaces": spaces or {},
        "agent": agent,
        "chat": "tether chat",
    }
    runner = (
        f"  runner     {LOCAL_RUNNER} ({', '.join(f'{k}={v}' for k, v in spaces.items())})\n"
        if spaces is not None
        else "  runner     none (--no-runner)\n"
    )
    context.current().emit(
        info,
        f"tether is up\n  url        {info['url']}\n  socket     {info['socket']}\n"
        f"  token      {info['admin_token_file']}\n{runner}  agent      {agent}\n"
        f"  console    {info['console']}\n"
        f"Open the console (this link logs in once, within 15 minutes):\n  {link}\n"
        "Chat with it from another terminal:  tether chat"
        + ("   (try: !git status)" if agent == "operator" else "")
        + "\nCtrl-C stops everything.",
    )


async def _up(
    config: Config, spaces: dict[str, str] | None, signals: StopSignals, open_browser: bool
) -> None:
    """Serve until a signal (or a failure of the gateway); ``spaces`` None: no local runner."""
    import asyncio

    from tether.app import Gateway
    from tether.gateway.auth import local_admin

    wake = asyncio.Event()
    signals.bind(asyncio.get_running_loop(), wake.set)
    if signals.requested:
        return
    gateway = Gateway(config)
    runner: subprocess.Popen[bytes] | None = None
    runner_dir = config.data_path / "local-runner"
    try:
        await gateway.start()
        if spaces is not None:
            await _ensure_identity(config, gateway, runner_dir, spaces)
            if not signals.requested:
                runner = _spawn_runner(config, runner_dir)
                await _wait_registered(gateway, runner, signals, 30.0)
        if signals.requested:
            return
        console = (gateway.config.gateway.public_url or gateway.server.url).rstrip("/") + "/"
        link = gateway.parts.console.login_link(console, local_admin())
        _announce(gateway, spaces, console, link)
        if open_browser:
            open_link(link)
        failed = asyncio.create_task(gateway.wait_failed(), name="up:gateway")
        woken = asyncio.create_task(wake.wait(), name="up:signal")
        try:
            # the wait wakes at a signal, and every second anyway: signals.requested is
            # what counts, so even a lost wake-up cannot leave us serving
            while not signals.requested and not failed.done():
                await asyncio.wait(
                    {failed, woken}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if runner is not None and runner.poll() is not None and not signals.requested:
                    sys.stderr.write(
                        f"the local runner exited ({runner.returncode}); restarting it\n"
                    )
                    runner = _spawn_runner(config, runner_dir)
        finally:
            failed.cancel()
            woken.cancel()
    finally:
        if runner is not None:
            await _stop_runner(runner, config.runner.shutdown_grace + 2)
        await gateway.stop()
        signals.unbind()
    if gateway.failure is not None:
        raise gateway.failure


def up(
    listen: ListenOpt = None,
    workspace: WorkspaceOpt = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Start only the gateway.")] = False,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the web console in a browser, logged in.")
    ] = False,
) -> None:
    """Start everything on this machine: the gateway (SQLite) and a local runner, in the foreground.

    The local runner works in --workspace NAME=PATH (default: the current directory).
    New sessions use it, with the openai agent when [agents.openai] model is set, else the
    operator agent. Talk to it from another terminal with `tether chat`, or in the web
    console: it prints a link that logs a browser in once (--open opens it).
    Prints the URL and where the admin token is. Ctrl-C (or SIGTERM) stops both and exits
    0; further signals while it stops only say so. Each request's access line (runners'
    heartbeats included) is logged at debug level: see them with --log-level debug.
    """
    signals = StopSignals().install()
    try:
        config = load_gateway_config(listen, None, None, None)
        quiet_access_log(config.log_level)
        signals.note = (
            f"still stopping: the local runner has up to {config.runner.shutdown_grace:g} s "
            "to finish its tool calls"
        )
        spaces: dict[str, str] | None = None
        if not no_runner:
            spaces = parse_workspaces(workspace) or _default_workspace()
            for name, path in spaces.items():
                if not Path(path).is_dir():
                    raise ConfigError(f"workspace {name!r}: {path} is not a directory")
        context.run_async(_up(local_defaults(config, spaces), spaces, signals, open_browser))
    finally:
        signals.block()


UP_EPILOG = examples(
    "tether up",
    "tether chat          # in another terminal: talk to the agent, approve its tool calls",
    "tether up --open     # and open the web console in a browser, logged in",
    "tether up --workspace app=~/code/app --listen 127.0.0.1:9000",
    "tether up --log-level debug     # also every request and heartbeat",
    after="Exit status: 0 after Ctrl-C or SIGTERM (however many); 1 when the gateway fails; "
    "2 for a bad flag or config.",
)


def register(app: typer.Typer) -> None:
    app.command(name="up", epilog=UP_EPILOG)(up)
