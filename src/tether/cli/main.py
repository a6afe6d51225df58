"""``tether``: the command line.

Heavy modules are imported inside commands, so ``tether --help`` and the commands that
only talk to the gateway start fast; a test checks which modules a command loads.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tether import __version__
from tether.cli import context, flags
from tether.cli.context import Cli
from tether.cli.help import examples
from tether.errors import TetherError

__all__ = ["app", "main"]

app = typer.Typer(
    name="tether",
    help=(
        "Drive AI coding agents on your own machines from the chats you already use.\n\n"
        "Start everything on this machine with `tether up`. Commands talk to the local "
        "gateway over its Unix socket unless given --url. The global options below may "
        "also come after the command (`tether runs list --json`)."
    ),
    epilog=examples(
        "tether up",
        'tether runs start "say hello" --follow',
        "tether runs list --json",
        "tether runners add laptop",
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="debug, info, warning or error (default: info).",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", metavar="FORMAT", help="text or json (default: text)."),
    ] = None,
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="TOML config file (default: $TETHER_CONFIG, else ~/.config/tether/config.toml).",
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Where the ledger and keys live "
            "(default: $TETHER_DATA_DIR, else ~/.local/share/tether).",
        ),
    ] = None,
) -> None:
    """Global options apply to every command."""
    context.set_current(
        Cli(
            json=json_output,
            log_level=log_level,
            log_format=log_format,
            config_file=config_file,
            data_dir=data_dir,
        )
    )


@app.command(epilog=examples("tether version", "tether version --json"))
def version() -> None:
    """Print the tether version."""
    cli = context.current()
    from tether.protocol.handshake import PROTOCOL_VERSIONS

    cli.emit(
        {
            "version": __version__,
            "protocol": list(PROTOCOL_VERSIONS),
            "python": sys.version.split()[0],
        },
        f"tether {__version__} (protocol {max(PROTOCOL_VERSIONS)})",
    )


def _register() -> None:
    from tether.cli import (
        agents_cmd,
        approvals_cmd,
        chat_cmd,
        config_cmd,
        console_cmd,
        db_cmd,
        deliveries_cmd,
        feishu_cmd,
        gateway_cmd,
        ping_cmd,
        policy_cmd,
        routines_cmd,
        runner_cmd,
        runners_cmd,
        runs_cmd,
        service_cmd,
        sessions_cmd,
        status_cmd,
        up_cmd,
        users_cmd,
    )

    gateway_cmd.register(app)
    up_cmd.register(app)
    console_cmd.register(app)
    chat_cmd.register(app)
    ping_cmd.register(app)
    status_cmd.register(app)
    service_cmd.register(app)
    app.add_typer(runs_cmd.runs_app, name="runs")
    app.add_typer(sessions_cmd.sessions_app, name="sessions")
    app.add_typer(runner_cmd.app, name="runner")
    app.add_typer(runners_cmd.runners_app, name="runners")
    app.add_typer(runners_cmd.tools_app, name="tools")
    app.add_typer(users_cmd.users_app, name="users")
    app.add_typer(agents_cmd.agents_app, name="agents")
    app.add_typer(approvals_cmd.approvals_app, name="approvals")
    app.add_typer(deliveries_cmd.deliveries_app, name="deliveries")
    app.add_typer(routines_cmd.routines_app, name="routines")
    app.add_typer(policy_cmd.policy_app, name="policy")
    app.add_typer(db_cmd.app, name="db")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(feishu_cmd.feishu_app, name="feishu")


_register()


def main() -> None:
    """Entry point of the ``tether`` console script."""
    command = typer.main.get_command(app)
    flags.annotate(command, flags.note(command.params))
    argv = flags.hoist(sys.argv[1:], command.params)
    try:
        command.main(args=argv, prog_name="tether")
    except TetherError as exc:
        context.current().fail(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
