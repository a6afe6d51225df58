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
    help="Look at sessions and change their settings.",
    no_args_is_help=True,
    epilog=examples(
        "tether sessions list",
        "tether sessions show SESSION_ID",
        "tether sessions set SESSION_ID --runner laptop --workspace app",
        "tether sessions attach SESSION_ID --codex-thread THREAD_ID",
    ),
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
    """List sessions, newest first, with the conversation each lives in.

    CONVERSATION is the chat a session talks in (`channel:chat_id`, for example
    `webhook.ops:chat-1` or `console:usr_…` for a terminal); attach to it from a terminal
    with `tether chat --session SESSION` or `tether chat --conversation CONVERSATION`.
    """
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
                    [
                        "SESSION",
                        "STATUS",
                        "CONVERSATION",
                        "AGENT",
                        "RUNNER",
                        "WORKSPACE",
                        "MODE",
                        "CREATED",
                    ],
                    (
                        [
                            s.id,
                            s.status,
                            s.conversation_id or "-",
                            s.agent,
                            s.runner_id or "-",
                            s.workspace or "-",
                            s.mode,
                            when(s.created_at),
                        ]
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
            if key != "agent_resume":
                typer.echo(f"{key:>16}  {value}")
        if s.agent_resume:
            typer.echo(
                f"\ncontinue this thread in a terminal on the runner's machine:\n  {s.agent_resume}"
            )

    context.current().emit(s, human)


@sessions_app.command(
    "set",
    epilog=examples(
        "tether sessions set SESSION_ID --runner laptop --workspace app",
        "tether sessions set SESSION_ID --mode auto-read",
        'tether sessions set SESSION_ID --runner ""     # no default runner any more',
    ),
)
def sessions_set(
    session_id: Annotated[
        str, typer.Argument(metavar="SESSION_ID", help="The session id (ses_…).")
    ],
    agent: Annotated[
        str | None,
        typer.Option("--agent", metavar="NAME", help="The agent new runs of the session use."),
    ] = None,
    runner: Annotated[
        str | None,
        typer.Option(
            "--runner",
            metavar="NAME",
            help='The runner tool calls go to when they name none ("" clears it).',
        ),
    ] = None,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", metavar="NAME", help='The workspace on that runner ("" clears it).'
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="MODE",
            help="How tool calls no rule covers are decided: auto-read (reads run, writes "
            "and shell ask), ask (everything asks) or auto (everything runs but the deny "
            "list). See `tether policy show`.",
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Change a session's settings; new runs of the session use them."""
    from tether.errors import ConfigError
    from tether.protocol.methods import SESSION_UPDATE
    from tether.protocol.runs import SessionUpdateParams

    if mode is not None and mode not in ("ask", "auto-read", "auto"):
        raise ConfigError(f"--mode takes ask, auto-read or auto, not {mode!r}")
    if agent is None and runner is None and workspace is None and mode is None:
        raise ConfigError("say what to change: --agent, --runner, --workspace or --mode")
    params = SessionUpdateParams(
        session_id=session_id,
        agent=agent,
        runner=runner,
        workspace=workspace,
        mode=mode,  # type: ignore[arg-type]
    )
    s = request(url, token, lambda c: c.call(SESSION_UPDATE, params))
    human = (
        f"session {s.id}: agent {s.agent}, runner {s.runner_id or '-'}, "
        f"workspace {s.workspace or '-'}, mode {s.mode}"
    )
    context.current().emit(s, human)


@sessions_app.command(
    "attach",
    epilog=examples(
        "codex exec 'start the refactor'          # in a terminal: prints the thread id",
        "tether sessions attach SESSION_ID --codex-thread THREAD_ID",
        'tether sessions attach SESSION_ID --codex-thread ""   # start afresh next time',
        after="The thread must be in the CODEX_HOME the session's runner gives Codex: the "
        "user's own when the runner sets agents.codex.share_home (docs/agents.md).",
    ),
)
def sessions_attach(
    session_id: Annotated[
        str, typer.Argument(metavar="SESSION_ID", help="The session id (ses_…).")
    ],
    codex_thread: Annotated[
        str,
        typer.Option(
            "--codex-thread",
            metavar="THREAD",
            help='A Codex thread id; the next run of the session continues it ("" detaches).',
        ),
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Continue a Codex thread (one started in a terminal, say) in this session."""
    from tether.protocol.methods import SESSION_UPDATE
    from tether.protocol.runs import SessionUpdateParams

    params = SessionUpdateParams(
        session_id=session_id,
        agent="codex" if codex_thread else None,
        agent_thread=codex_thread,
    )
    s = request(url, token, lambda c: c.call(SESSION_UPDATE, params))
    human = (
        f"session {s.id} continues Codex thread {s.agent_thread} on its next run"
        if s.agent_thread
        else f"session {s.id}: its next run starts a new thread"
    )
    context.current().emit(s, human)
