"""``tether agents list``: the agent backends a gateway offers, and the plugins it skipped;
with ``--here``, the hosted agents this machine's runner can start, and their versions."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table

__all__ = ["agents_app"]

agents_app = typer.Typer(
    help="The agent backends a gateway offers (built-in and plugins).",
    no_args_is_help=True,
    epilog=examples("tether agents list", "tether agents list --json"),
)


HereOpt = Annotated[
    bool,
    typer.Option(
        "--here",
        help="Show the hosted agents (Codex, Claude Code, Gemini CLI, codex-acp, acp) a runner "
        "on this machine can start, their versions and what is missing; needs no gateway.",
    ),
]


@agents_app.command(
    "list",
    epilog=examples("tether agents list", "tether agents list --json", "tether agents list --here"),
)
def list_(url: UrlOpt = None, token: TokenOpt = None, here: HereOpt = False) -> None:
    """List the agents you can start runs with, and any plugin that was skipped and why."""
    if here:
        _here()
        return
    from tether.protocol.methods import AGENT_LIST
    from tether.protocol.system import Empty

    found = request(url, token, lambda c: c.call(AGENT_LIST, Empty()))

    def human() -> None:
        rows = []
        for a in found.agents:
            can = ", ".join(k for k, v in a.capabilities.items() if v) or "-"
            mark = " (default)" if a.id == found.default else ""
            rows.append([a.id + mark, a.version, a.source, can, a.label])
        typer.echo(table(["AGENT", "VERSION", "FROM", "CAPABILITIES", "WHAT"], rows))
        if found.skipped:
            typer.echo("\nskipped plugins:")
            for s in found.skipped:
                typer.echo(f"  {s.name} ({s.source}): {s.reason}")

    context.current().emit(found, human)


def _here() -> None:
    from tether.runner.agents.host import hosted_here

    found: list[dict[str, Any]] = hosted_here(context.current().config())

    def human() -> None:
        rows = [
            [a["agent"], a["version"] or "-", a["program"] or "-", a["problem"] or "ready"]
            for a in found
        ]
        typer.echo(table(["AGENT", "VERSION", "PROGRAM", "STATUS"], rows))

    context.current().emit(found, human)
