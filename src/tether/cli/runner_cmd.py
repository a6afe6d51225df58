"""``tether runner`` (the daemon on a user's machine) and ``tether runner enroll``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.help import examples
from tether.errors import ConfigError, PolicyDenied

__all__ = ["WorkspaceOpt", "app", "parse_workspaces"]

app = typer.Typer(
    invoke_without_command=True,
    epilog=examples(
        "tether runner",
        "tether runner --workspace docs=~/code/docs",
        "tether runner enroll --gateway https://gw.example.com --code CODE -w app=~/code/app",
        after="Exit status: 0 after SIGTERM or Ctrl-C; 2 when it refuses to connect (plain "
        "ws:// or http:// to a non-loopback gateway without --insecure) or its config is "
        "invalid; 3 when the gateway rejects its credential (revoked or unknown: enrol again); "
        "4 when another process already runs with this runner's credential.",
    ),
)

WorkspaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--workspace",
        "-w",
        metavar="NAME=PATH",
        help="A workspace as NAME=PATH (repeatable). Adds to [runner.workspaces] in the config.",
        show_default=False,
    ),
]
EnrollWorkspaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--workspace",
        "-w",
        metavar="NAME=PATH",
        help="A workspace as NAME=PATH (repeatable), kept with the credential. Without it a "
        "re-enrolment keeps the previous workspaces; with it they are replaced.",
        show_default=False,
    ),
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Allow plain ws:// or http:// to a non-loopback gateway.")
]


def parse_workspaces(items: list[str] | None) -> dict[str, str]:
    """``NAME=PATH`` items -> {name: absolute path}; a clear error for anything else."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--workspace takes NAME=PATH, got {item!r}")
        out[name] = str(Path(path).expanduser().absolute())
    return out


@app.callback()
def runner(
    ctx: typer.Context,
    workspace: WorkspaceOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Run the daemon in the foreground (after `tether runner enroll`); SIGTERM stops it cleanly.

    Workspaces come from [runner.workspaces] in the config file, from --workspace given at
    enrolment, and from --workspace here. Protected paths, timeouts, the output cap and the
    sandbox are local policy in [runner]; the gateway cannot widen them.
    """
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from tether.cli.stop import StopSignals

    signals = StopSignals().install()
    cli = context.current()
    config = cli.config()
    signals.note = (
        f"still stopping: running tool calls have up to {config.runner.shutdown_grace:g} s"
    )
    from tether.runner.node import prepare

    node = prepare(
        config,
        flags=parse_workspaces(workspace),
        env=os.environ,
        home=Path(os.environ.get("HOME") or Path.home()),
        insecure=insecure,
    )
    identity, roots, sandbox = node.identity, node.workspaces, node.sandbox

    async def go() -> int:
        daemon = node.daemon()
        signals.bind(asyncio.get_running_loop(), daemon.stop.set)

        async def watch_signals() -> None:
            # the handler sets daemon.stop at once; this only makes a lost wake-up harmless
            while not signals.requested:  # noqa: ASYNC110 - a flag a signal handler sets
                await asyncio.sleep(1.0)
            daemon.stop.set()

        watcher = asyncio.create_task(watch_signals(), name="runner:signals")
        ready = asyncio.create_task(daemon.registered.wait(), name="runner:ready")
        ready.add_done_callback(
            lambda t: (
                None
                if t.cancelled()
                else _announce(identity.name, identity.gateway_url, roots, sandbox.reason)
            )
        )
        try:
            return await daemon.run()
        finally:
            ready.cancel()
            watcher.cancel()
            signals.unbind()

    try:
        code = context.run_async(go())
    finally:
        signals.block()
    if code:
        raise typer.Exit(code)


def _announce(name: str, url: str, roots: dict[str, Path], sandbox: str) -> None:
    cli = context.current()
    data = {
        "runner": name,
        "gateway": url,
        "workspaces": {k: str(v) for k, v in roots.items()},
        "sandbox": sandbox,
    }
    spaces = ", ".join(f"{k}={v}" for k, v in roots.items())
    cli.emit(
        data, f"runner {name} connected to {url}\n  workspaces {spaces}\n  sandbox    {sandbox}"
    )
    sys.stdout.flush()


@app.command(
    "enroll",
    epilog=examples(
        "tether runner enroll --gateway https://gw.example.com --code ABCD-EFGH-JKMN-PQRS \\",
        "    --workspace app=~/code/app",
        "tether runner enroll --gateway https://gw.example.com --code NEW-CODE   # keeps workspaces",
        after="Exit status: 0 when enrolled; 1 when the gateway refuses the code or cannot be "
        "reached; 2 for plain http:// to a non-loopback gateway without --insecure, or a bad "
        "--workspace.",
    ),
)
def enroll(
    gateway: Annotated[
        str,
        typer.Option(
            "--gateway", metavar="URL", help="The gateway URL printed by `tether runners add`."
        ),
    ],
    code: Annotated[
        str, typer.Option("--code", metavar="CODE", help="The one-time enrolment code.")
    ],
    workspace: EnrollWorkspaceOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Enrol this machine: trade the one-time code for a credential (stored 0600 in the config dir).

    Enrolling again (say after `tether runners add NAME --rotate`) without --workspace keeps
    the workspaces of the previous enrolment; --workspace replaces them.
    """
    from tether import __version__
    from tether.runner.enroll import enroll as do_enroll
    from tether.runner.enroll import previous_workspaces

    cli = context.current()
    config = cli.config()
    spaces = parse_workspaces(workspace)
    kept = False
    if not spaces:
        spaces = previous_workspaces(config.config_path)
        kept = bool(spaces)
    for name, where in spaces.items():
        if not Path(where).is_dir():
            hint = (
                " (kept from the previous enrolment; give --workspace to replace)" if kept else ""
            )
            raise ConfigError(f"workspace {name!r}: {where} is not a directory{hint}")
    try:
        identity, path = context.run_async(
            do_enroll(
                gateway,
                code,
                config.config_path,
                workspaces=spaces,
                insecure=insecure,
                version=__version__,
            )
        )
    except PolicyDenied as exc:  # plain http:// to a remote gateway: retrying won't help
        cli.fail(exc, context.EXIT_USAGE)
    listed = ", ".join(f"{k}={v}" for k, v in spaces.items())
    if kept:
        where = f"workspaces {listed} (kept from the previous enrolment; --workspace replaces them)"
    elif spaces:
        where = f"workspaces {listed}"
    elif config.runner.workspaces:
        where = "workspaces from [runner.workspaces] in the config"
    else:
        where = "no workspaces yet: give `tether runner --workspace NAME=PATH`"
    cli.emit(
        {
            "runner_id": identity.runner_id,
            "name": identity.name,
            "identity_file": str(path),
            "workspaces": spaces,
            "workspaces_kept": kept,
        },
        f"enrolled as runner {identity.name} ({identity.runner_id})\ncredential saved to {path}\n"
        f"{where}\nstart it with: tether runner",
    )
