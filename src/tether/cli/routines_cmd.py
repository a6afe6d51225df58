"""``tether routines``: scheduled runs: add, list, pause, resume, remove."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import short, table, when

if TYPE_CHECKING:
    from tether.protocol.routines import RoutineInfo

__all__ = ["routines_app"]

routines_app = typer.Typer(
    help="Routines: runs started in a session on a cron schedule, as the person who added "
    "them (who approves their requests).",
    no_args_is_help=True,
    epilog=examples(
        'tether routines add standup --cron "0 9 * * 1-5" --tz Asia/Shanghai '
        '--session SESSION_ID --input "summarise yesterday\'s commits"',
        "tether routines list",
        "tether routines pause standup",
        "tether routines resume standup",
        "tether routines remove standup",
    ),
)

RefArg = Annotated[str, typer.Argument(metavar="NAME", help="The routine's name (or id).")]


@routines_app.command(
    "add",
    epilog=examples(
        'tether routines add standup --cron "0 9 * * 1-5" --tz Asia/Shanghai '
        '--session SESSION_ID --input "summarise yesterday\'s commits"',
        'tether routines add nightly --cron @daily --session SESSION_ID --input "run the tests"',
        'tether routines add ping --cron "* * * * * */30" --session SESSION_ID '
        '--input "say hi" --catch-up skip   # every 30 s (seconds last)',
    ),
)
def add(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="A unique name (1-64 of letters, digits, _ . -)."),
    ],
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help='Five fields "minute hour day month weekday" ("0 9 * * 1-5"), six with '
            'seconds as the last ("* * * * * */2"), or @hourly, @daily, @weekly, @monthly.',
        ),
    ],
    session: Annotated[
        str,
        typer.Option("--session", metavar="SESSION_ID", help="The session its runs start in."),
    ],
    input_: Annotated[
        str,
        typer.Option("--input", metavar="TEXT", help="What each run is asked (not a / command)."),
    ],
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            metavar="ZONE",
            help="An IANA time zone (Asia/Shanghai, Europe/Berlin, UTC); default: the "
            "gateway's [routines] timezone (UTC unless configured).",
        ),
    ] = None,
    catch_up: Annotated[
        str | None,
        typer.Option(
            "--catch-up",
            metavar="WHAT",
            help="Due times missed while no gateway ran: once (one run) or skip; "
            "default: the gateway's [routines] catch_up (once).",
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Add a routine; it runs as you, in a session you may use."""
    import msgspec

    from tether.errors import ConfigError
    from tether.protocol.methods import ROUTINE_ADD
    from tether.protocol.routines import RoutineAddParams

    try:
        params = msgspec.convert(
            {
                "name": name,
                "cron": cron,
                "session_id": session,
                "input": input_,
                "tz": tz,
                "catch_up": catch_up,
            },
            RoutineAddParams,
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid routine: {exc}") from None
    added = request(url, token, lambda c: c.call(ROUTINE_ADD, params))
    context.current().emit(
        added,
        f"routine {added.name} added: {added.cron} ({added.tz}), next at "
        f"{when(added.next_fire_at)}, in session {added.session_id}",
    )


@routines_app.command(
    "list",
    epilog=examples(
        "tether routines list",
        "tether routines list --session SESSION_ID",
        "tether routines list --json",
    ),
)
def list_(
    session: Annotated[
        str | None,
        typer.Option("--session", metavar="SESSION_ID", help="Only this session's routines."),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List routines (yours; an owner sees all) with their next due time, in local time."""
    from tether.protocol.methods import ROUTINE_LIST
    from tether.protocol.routines import RoutineListParams

    params = RoutineListParams(session_id=session)
    found = request(url, token, lambda c: c.call(ROUTINE_LIST, params))

    def human() -> None:
        if not found.routines:
            typer.echo("no routines")
            return
        rows = [
            [
                r.name,
                r.state,
                r.cron,
                r.tz,
                when(r.next_fire_at),
                r.session_id,
                r.owner_name,
                r.last_run_id or "-",
            ]
            for r in found.routines
        ]
        headers = ["NAME", "STATE", "CRON", "TZ", "NEXT", "SESSION", "OWNER", "LAST RUN"]
        typer.echo(table(headers, rows))

    context.current().emit(found, human)


def _change(method_name: str, ref: str, url: str | None, token: str | None) -> RoutineInfo:
    from tether.protocol import methods as m
    from tether.protocol.routines import RoutineRef

    method = {
        "pause": m.ROUTINE_PAUSE,
        "resume": m.ROUTINE_RESUME,
        "remove": m.ROUTINE_REMOVE,
    }[method_name]
    return request(url, token, lambda c: c.call(method, RoutineRef(routine=ref)))


@routines_app.command(
    "pause",
    epilog=examples("tether routines pause standup", "tether routines pause standup --json"),
)
def pause(name: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Pause a routine: it starts nothing until resumed."""
    info = _change("pause", name, url, token)
    context.current().emit(info, f"routine {info.name} paused")


@routines_app.command(
    "resume",
    epilog=examples("tether routines resume standup", "tether routines resume standup --json"),
)
def resume(name: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Resume a paused routine from its next due time after now (what it missed is skipped)."""
    info = _change("resume", name, url, token)
    context.current().emit(info, f"routine {info.name} resumed; next at {when(info.next_fire_at)}")


@routines_app.command(
    "remove",
    epilog=examples("tether routines remove standup", "tether routines remove rtn_01J… --json"),
)
def remove(name: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a routine (one from the config is removed from the config instead)."""
    info = _change("remove", name, url, token)
    context.current().emit(info, f"routine {info.name} removed ({short(info.input, 40)})")
