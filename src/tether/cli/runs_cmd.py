"""``tether runs`` and ``tether sessions``: look at, start, follow and cancel runs."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, open_client, request
from tether.cli.help import examples
from tether.cli.table import short, table, when

if TYPE_CHECKING:
    from tether.protocol.runs import EventInfo, RunInfo
    from tether.transport.client import RpcClient

__all__ = ["EXIT_CANCELLED", "FOLLOW_EXIT", "CursorOpt", "LimitOpt", "runs_app"]

EXIT_CANCELLED = 3
FOLLOW_EXIT = {
    "run.succeeded": 0,
    "run.failed": context.EXIT_FAILURE,
    "run.expired": context.EXIT_FAILURE,
    "run.cancelled": EXIT_CANCELLED,
}
"""The exit status of a command that followed a run to its end, by the run's last event."""

FOLLOW_CODES = (
    "0 when the run succeeded; 1 when it failed or expired (and for any error of the "
    "command itself); 3 when it was cancelled; 130 when interrupted."
)

runs_app = typer.Typer(
    help="Look at, start, follow and cancel runs.",
    no_args_is_help=True,
    epilog=examples('tether runs start "say hello" --follow', "tether runs list --state running"),
)
RunArg = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run id (run_…).", show_default=False)
]
LimitOpt = Annotated[
    int, typer.Option("--limit", metavar="N", min=1, max=1000, help="At most N items.")
]
CursorOpt = Annotated[
    str | None,
    typer.Option(
        "--cursor",
        metavar="ID",
        help="Continue after this id (the `more: --cursor` line of the last page).",
    ),
]
EVENT_HEADER = f"{'SEQ':>6}  {'TIME':<19}  {'SOURCE':<7}  {'KIND':<22}  DETAIL"


def _print_run(run: RunInfo) -> None:
    rows = [
        ("run", run.id),
        ("session", run.session_id),
        ("agent", run.agent),
        ("state", run.state + (f" ({run.reason})" if run.reason else "")),
        ("created", when(run.created_at)),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("attempts", str(run.attempts)),
        ("owner", run.owner or "-"),
        ("cancel requested", "yes" if run.cancel_requested else "no"),
        ("input", short(run.input, 200)),
        ("output", short(run.output, 200) or "-"),
    ]
    for key, value in rows:
        typer.echo(f"{key:>16}  {value}")


def _event_line(event: EventInfo) -> str:
    payload = json.loads(bytes(event.payload))
    detail = (
        payload.get("text")
        if isinstance(payload, dict) and "text" in payload
        else json.dumps(payload, ensure_ascii=False)
    )
    at = when(event.created_at)
    return (
        f"{event.seq:>6}  {at:<19}  {event.source:<7}  {event.kind:<22}  {short(str(detail), 80)}"
    )


@runs_app.command(
    "start",
    epilog=examples(
        'tether runs start "!git status" --follow       # the operator agent',
        'tether runs start "say hello" --agent script --follow',
        "tether runs start - --follow < script.txt",
        'tether runs start "say more" --session SESSION_ID --no-steer',
        after=f"Exit status with --follow: {FOLLOW_CODES} Without --follow: 0 once the input "
        "is accepted. Either way 1 when it was dropped (the session's steering queue was full).",
    ),
)
def start(
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT",
            help="The input: for the operator agent !COMMAND, /read PATH, /ls, /write PATH "
            "or help; for the script agent one command per line. '-' reads stdin.",
        ),
    ],
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="SESSION_ID", help="Add to this session (default: a new one)."
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            metavar="NAME",
            help="Agent backend (default: the session's, else runs.default_agent).",
        ),
    ] = None,
    no_steer: Annotated[
        bool, typer.Option("--no-steer", help="Always queue a new run, never steer the active one.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print the run's events until it ends; exit with its outcome."
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start a run, or steer the session's active run (the answer says which)."""
    from tether.protocol.methods import RUN_CREATE
    from tether.protocol.runs import RunCreateParams

    cli = context.current()
    body = sys.stdin.read() if text == "-" else text
    params = RunCreateParams(input=body, session_id=session, agent=agent, steer=not no_steer)
    created = request(url, token, lambda c: c.call(RUN_CREATE, params))
    cli.emit(
        created, f"{created.run.id}  {created.disposition}  (session {created.run.session_id})"
    )
    if created.disposition == "dropped":
        if not cli.json:
            sys.stderr.write("the input was dropped: the session's steering queue is full\n")
        raise typer.Exit(context.EXIT_FAILURE)
    if follow and created.disposition in ("started", "queued"):
        raise typer.Exit(_tail(created.run.id, 0, url, token))


@runs_app.command(
    "list",
    epilog=examples(
        "tether runs list",
        "tether runs list --state running --state waiting",
        "tether runs list --session SESSION_ID --limit 100 --json",
    ),
)
def list_(
    session: Annotated[
        str | None, typer.Option("--session", metavar="SESSION_ID", help="Only this session.")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only runs in this state (repeatable): queued, running, waiting, succeeded, "
            "failed, cancelled, expired.",
        ),
    ] = None,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List runs, newest first."""
    import msgspec

    from tether.protocol.methods import RUN_LIST
    from tether.protocol.runs import RunListParams

    cli = context.current()
    try:
        params = msgspec.convert(
            {"session_id": session, "states": state, "limit": limit, "cursor": cursor},
            RunListParams,
        )
    except msgspec.ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    page = request(url, token, lambda c: c.call(RUN_LIST, params))

    def human() -> None:
        if not page.runs:
            typer.echo("no runs")
        else:
            typer.echo(
                table(
                    ["RUN", "STATE", "CREATED", "AGENT", "INPUT"],
                    (
                        [
                            run.id,
                            run.state + (f"/{run.reason}" if run.reason else ""),
                            when(run.created_at),
                            run.agent,
                            short(run.input, 40),
                        ]
                        for run in page.runs
                    ),
                )
            )
        if page.next_cursor:
            typer.echo(f"more: --cursor {page.next_cursor}")

    cli.emit(page, human)


@runs_app.command(
    "show", epilog=examples("tether runs show RUN_ID", "tether runs show RUN_ID --json")
)
def show(run_id: RunArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one run."""
    from tether.protocol.methods import RUN_GET
    from tether.protocol.runs import RunGetParams

    run = request(url, token, lambda c: c.call(RUN_GET, RunGetParams(run_id=run_id)))
    context.current().emit(run, lambda: _print_run(run))


@runs_app.command(
    "events",
    epilog=examples("tether runs events RUN_ID", "tether runs events RUN_ID --after 10 --limit 50"),
)
def events(
    run_id: RunArg,
    after: Annotated[
        int, typer.Option("--after", metavar="SEQ", min=0, help="Only events after this seq.")
    ] = 0,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, max=1000, help="At most N events.")
    ] = 500,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a page of a run's events (to follow them live, use `tether runs tail`)."""
    from tether.protocol.methods import RUN_EVENTS
    from tether.protocol.runs import RunEventsParams

    page = request(
        url,
        token,
        lambda c: c.call(RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after, limit=limit)),
    )

    def human() -> None:
        if page.events:
            typer.echo(EVENT_HEADER)
        for event in page.events:
            typer.echo(_event_line(event))
        typer.echo(f"state {page.state}, last seq {page.last_seq}")
        if page.more:
            typer.echo(f"more: tether runs events {run_id} --after {page.last_seq}")

    context.current().emit(page, human)


def _tail(run_id: str, after: int, url: str | None, token: str | None) -> int:
    """Print the run's events until it ends; the exit status its last event stands for."""
    from tether.transport.follow import follow

    cli = context.current()
    config = cli.config()

    def reconnecting(attempt: int, exc: BaseException) -> None:
        sys.stderr.write(f"connection lost ({exc}); reconnecting (attempt {attempt})\n")

    async def go() -> int:
        header = not cli.json
        async for event in follow(
            lambda router: open_client(config, url, token, router=router),
            run_id,
            after_seq=after,
            on_reconnect=reconnecting,
        ):
            if cli.json:
                cli.emit(event, "")
            else:
                if header:
                    typer.echo(EVENT_HEADER)
                    header = False
                typer.echo(_event_line(event))
            if event.kind in FOLLOW_EXIT:
                return FOLLOW_EXIT[event.kind]
        return context.EXIT_FAILURE  # the stream ended without the run's last event

    return context.run_async(go())


@runs_app.command(
    "tail",
    epilog=examples(
        "tether runs tail RUN_ID",
        "tether runs tail RUN_ID --after 42 --json",
        "tether runs tail RUN_ID && echo done",
        after=f"Exit status: {FOLLOW_CODES}",
    ),
)
def tail(
    run_id: RunArg,
    after: Annotated[
        int,
        typer.Option(
            "--after", metavar="SEQ", min=0, help="Start after this seq (default: from the start)."
        ),
    ] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Follow a run's events live until it ends; reconnects and resumes if the connection drops.

    Exits with the run's outcome, so scripts can wait for a run: see the exit status below.
    """
    raise typer.Exit(_tail(run_id, after, url, token))


@runs_app.command(
    "artifact",
    epilog=examples(
        "tether runs artifact ART_ID -o payload.json", "tether runs artifact ART_ID | jq ."
    ),
)
def artifact(
    artifact_id: Annotated[
        str,
        typer.Argument(
            metavar="ARTIFACT_ID", help="The artifact id (art_…), as an event names it."
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write to this file instead of stdout."),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Fetch an artifact, such as an event payload too large to carry inline."""
    import hashlib

    from tether.errors import InternalError
    from tether.protocol.methods import ARTIFACT_GET
    from tether.protocol.runs import ArtifactGetParams

    async def fetch(c: RpcClient) -> tuple[Any, bytes]:
        data = bytearray()
        while True:
            chunk = await c.call(
                ARTIFACT_GET, ArtifactGetParams(artifact_id=artifact_id, offset=len(data))
            )
            data += chunk.data
            if chunk.eof or not chunk.data:
                return chunk, bytes(data)

    meta, content = request(url, token, fetch)
    if hashlib.sha256(content).hexdigest() != meta.sha256:
        raise InternalError(f"artifact {artifact_id} arrived damaged (sha256 mismatch)")
    if out is not None:
        with open(out, "wb") as fh:
            fh.write(content)
        context.current().emit(
            {"artifact": meta.id, "size": meta.size, "file": out},
            f"{meta.id}: {meta.size} bytes ({meta.media_type}) written to {out}",
        )
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()


@runs_app.command(
    "cancel",
    epilog=examples("tether runs cancel RUN_ID", 'tether runs cancel RUN_ID --reason "wrong repo"'),
)
def cancel(
    run_id: RunArg,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Recorded with the cancellation.")
    ] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a run: a queued run ends now; an active run is stopped after a grace period."""
    from tether.protocol.methods import RUN_CANCEL
    from tether.protocol.runs import RunCancelParams

    run = request(
        url, token, lambda c: c.call(RUN_CANCEL, RunCancelParams(run_id=run_id, reason=reason))
    )
    note = (
        "cancelled"
        if run.state == "cancelled"
        else (
            f"cancel requested (state {run.state})"
            if run.cancel_requested
            else f"already {run.state}"
        )
    )
    context.current().emit(run, f"{run.id}  {note}")
