"""``tether sessions``: look at sessions."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.runs_cmd import CursorOpt, LimitOpt
from tether.cli.table import table, when

__all__ = ["sessions_app"]

sessions_app = typer.Typer(
    help="Look at sessions.",
    no_args_is_help=True,
    epilog=examples("tether sessions list", "tether sessions show SESSION_ID"),
)


@sessions_app.command(
    "list", epilog=examples("tether sessions list", "tether sessions list --limit 100 --json")
)
def sessions_list(
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List sessions, newest first."""
    from tether.protocol.methods import SESSION_LIST
    from tether.protocol.runs import SessionListParams

    page = request(
        url, token, lambda c: c.call(SESSION_LIST, SessionListParams(limit=limit, cursor=cursor))
    )

    def human() -> None:
        if not page.sessions:
            typer.echo("no sessions")
        else:
            typer.echo(
                table(
                    ["SESSION", "STATUS", "AGENT", "CREATED", "CONVERSATION"],
                    (
                        [s.id, s.status, s.agent, when(s.created_at), s.conversation_id or "-"]
                        for s in page.sessions
                    ),
                )
            )
        if page.next_cursor:
            typer.echo(f"more: --cursor {page.next_cursor}")

    context.current().emit(page, human)


@sessions_app.command(
    "show",
    epilog=examples("tether sessions show SESSION_ID", "tether sessions show SESSION_ID --json"),
)
def sessions_show(
    session_id: Annotated[
        str, typer.Argument(metavar="SESSION_ID", help="The session id (ses_…).")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one session."""
    from tether.protocol.methods import SESSION_GET
    from tether.protocol.runs import SessionGetParams

    s = request(url, token, lambda c: c.call(SESSION_GET, SessionGetParams(session_id=session_id)))
    data: dict[str, Any] = {f: getattr(s, f) for f in s.__struct_fields__}

    def human() -> None:
        for key, value in data.items():
            typer.echo(f"{key:>16}  {value}")

    context.current().emit(s, human)
