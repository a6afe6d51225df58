"""``tether approvals``: the requests (approvals and questions) you may decide."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table

if TYPE_CHECKING:
    from tether.protocol.access import RequestInfo

__all__ = ["approvals_app"]

approvals_app = typer.Typer(
    help="List and decide the approvals and questions waiting for you.",
    no_args_is_help=True,
    epilog=examples(
        "tether approvals list",
        "tether approvals approve k3xp            # by handle (or full id)",
        "tether approvals approve k3xp --session  # and the same call again in this session",
        "tether approvals deny k3xp",
        'tether approvals answer m7qa "use the staging database"',
    ),
)


def _left(expires_at: float) -> str:
    seconds = int(expires_at - time.time())
    if seconds <= 0:
        return "expired"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe(r: RequestInfo) -> str:
    """A request in a few lines: what it would run or asks, who asked, until when."""
    when = f"expires in {_left(r.expires_at)}" if r.state == "open" else r.state
    if r.decided_by and r.state != "open":
        when += f" by {r.decided_by}"
    lines = [f"{r.kind} {r.handle} ({r.id}), run {r.run_id or '-'}, {when}"]
    if r.kind == "question":
        lines.append(f"  question: {r.summary}")
        if r.choices:
            lines.append(f"  choices: {' | '.join(r.choices)}")
        return "\n".join(lines)
    plan = r.plan
    lines.append(f"  {plan.get('tool')} on {plan.get('runner')} in {plan.get('workspace')}")
    if plan.get("commands") is not None:
        for command in plan["commands"]:
            lines.append(f"    $ {command}")
        if plan.get("cwd") not in (None, "."):
            lines.append(f"  cwd: {plan['cwd']}")
        if plan.get("env"):
            lines.append(f"  sets: {', '.join(plan['env'])}")
    elif "commands" in plan:
        lines.append("  (the command could not be parsed; read it in full:)")
    import json

    lines.append(f"  args: {json.dumps(plan.get('args'), ensure_ascii=False)}")
    return "\n".join(lines)


@approvals_app.command(
    "list", epilog=examples("tether approvals list", "tether approvals list --run RUN_ID --json")
)
def list_(
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="Only this run's.")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the open requests you may decide, oldest first."""
    from tether.protocol.access import RequestListParams
    from tether.protocol.methods import REQUEST_LIST

    found = request(url, token, lambda c: c.call(REQUEST_LIST, RequestListParams(run_id=run)))

    def human() -> None:
        if not found.requests:
            typer.echo("nothing waits for you")
            return
        rows = [
            [r.handle, r.kind, _left(r.expires_at), r.run_id or "-", r.summary[:80]]
            for r in found.requests
        ]
        typer.echo(table(["HANDLE", "KIND", "EXPIRES", "RUN", "WHAT"], rows))

    context.current().emit(found, human)


def _resolve(
    ref: str, url: str | None, token: str | None, *, decision: str | None, answer: str | None
) -> None:
    from tether.protocol.access import RequestResolveParams
    from tether.protocol.methods import REQUEST_RESOLVE

    params = RequestResolveParams(request=ref, decision=decision, answer=answer)  # type: ignore[arg-type]
    done = request(url, token, lambda c: c.call(REQUEST_RESOLVE, params))
    what = {
        "allow_once": "allowed once",
        "allow_session": "allowed for this session",
        "deny": "denied",
        "answer": "answered",
    }.get(done.decision or "", done.state)
    context.current().emit(done, f"{done.kind} {done.handle} {what}\n{describe(done)}")


RefArg = Annotated[str, typer.Argument(metavar="ID|HANDLE", help="The request's id or handle.")]


@approvals_app.command(
    "approve",
    epilog=examples("tether approvals approve k3xp", "tether approvals approve k3xp --session"),
)
def approve(
    ref: RefArg,
    session: Annotated[
        bool,
        typer.Option(
            "--session",
            help="Also allow the same call (same tool and workspace, same paths or shell "
            "commands) for the rest of the session, without asking.",
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Allow a waiting tool call (once, or for the session): it runs exactly as shown."""
    _resolve(ref, url, token, decision="allow_session" if session else "allow_once", answer=None)


@approvals_app.command("deny", epilog=examples("tether approvals deny k3xp"))
def deny(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Deny a waiting tool call: it does not run, and the agent is told so."""
    _resolve(ref, url, token, decision="deny", answer=None)


@approvals_app.command(
    "answer", epilog=examples('tether approvals answer m7qa "yes, the second one"')
)
def answer(
    ref: RefArg,
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="Your answer (or one of its choices).")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Answer an agent's question."""
    _resolve(ref, url, token, decision=None, answer=text)
