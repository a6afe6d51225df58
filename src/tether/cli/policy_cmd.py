"""``tether policy``: the effective policy, and which rule decides a given call."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table
from tether.errors import ConfigError

__all__ = ["policy_app"]

policy_app = typer.Typer(
    help="Show the effective policy and explain how a tool call would be decided.",
    no_args_is_help=True,
    epilog=examples(
        "tether policy show",
        "tether policy show --session SES_ID",
        'tether policy explain shell --args \'{"command": "git push --force origin main"}\'',
    ),
)

SessionOpt = Annotated[
    str | None,
    typer.Option("--session", metavar="ID", help="A session: its mode and its session rules."),
]


@policy_app.command(
    "show", epilog=examples("tether policy show", "tether policy show --session SES_ID --json")
)
def show(session: SessionOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print the rules in the order they apply, where each came from, and the mode."""
    from tether.protocol.access import PolicyShowParams
    from tether.protocol.methods import POLICY_SHOW

    view = request(url, token, lambda c: c.call(POLICY_SHOW, PolicyShowParams(session_id=session)))

    def human() -> None:
        rows = [[str(i), r.decision, r.source, r.rule] for i, r in enumerate(view.rules, start=1)]
        typer.echo(table(["#", "DECISION", "FROM", "RULE"], rows))
        table_text = ", ".join(f"{risk} {d}" for risk, d in view.mode_table.items())
        typer.echo(f"\nthen mode {view.mode}: {table_text}")
        who = ", ".join(["the run's creator", "owners", *view.approvers])
        typer.echo(f"requests are decided by {who}; they expire after {view.approval_timeout:g} s")

    context.current().emit(view, human)


@policy_app.command(
    "explain",
    epilog=examples(
        'tether policy explain read_file --args \'{"path": "src/app.py"}\'',
        'tether policy explain shell --args \'{"command": "ls | sh"}\' --session SES_ID',
        "tether policy explain deploy --risk exec",
    ),
)
def explain(
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="Tool name (shell, write_file …).")],
    args: Annotated[str, typer.Option("--args", metavar="JSON", help="Tool arguments.")] = "{}",
    session: SessionOpt = None,
    workspace: Annotated[
        str, typer.Option("--workspace", metavar="NAME", help="Workspace (default: the session's).")
    ] = "",
    risk: Annotated[
        str | None,
        typer.Option(
            "--risk", metavar="CLASS", help="read, write or exec, when no runner offers the tool."
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Say which rule decides a call and why. Nothing is run."""
    import msgspec

    from tether.protocol.access import PolicyExplainParams
    from tether.protocol.methods import POLICY_EXPLAIN

    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    try:
        params = msgspec.convert(
            {
                "tool": tool,
                "args": parsed,
                "session_id": session,
                "workspace": workspace,
                "risk": risk,
            },
            PolicyExplainParams,
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid request: {exc}") from None
    found = request(url, token, lambda c: c.call(POLICY_EXPLAIN, params))

    def human() -> None:
        typer.echo(f"{found.decision}: {found.rule}")
        if found.command:
            typer.echo(f"  decided by the command: {found.command}")
        if not found.parsed:
            typer.echo("  the command line could not be parsed, so it asks in every mode")
        for step in found.commands:
            typer.echo(f"  $ {step.source}  ->  {step.decision} ({step.rule})")
        typer.echo(f"(risk {found.risk}, mode {found.mode})")

    context.current().emit(found, human)
