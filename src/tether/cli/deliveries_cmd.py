"""``tether deliveries``: the messages tether owes chats (the outbox), and what became of them."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table

__all__ = ["deliveries_app"]

deliveries_app = typer.Typer(
    help="The messages tether owes chats: pending, delivered, given up (owner).",
    no_args_is_help=True,
    epilog=examples(
        "tether deliveries list --state dead        # what was given up, and why",
        "tether deliveries list --run RUN_ID",
    ),
)


@deliveries_app.command(
    "list",
    epilog=examples(
        "tether deliveries list",
        "tether deliveries list --state pending --state dead",
        "tether deliveries list --conversation webhook.ops:chat-42 --json",
    ),
)
def list_(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="pending, sending, delivered, dead (given up) or superseded; repeatable.",
        ),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="Only what this run said.")
    ] = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation", metavar="KEY", help="Only this conversation: CHANNEL:CHAT[:THREAD]."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, metavar="N", help="At most this many.")
    ] = 100,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List deliveries, oldest first: where each goes, its state, attempts and last error."""
    import msgspec

    from tether.errors import ConfigError
    from tether.protocol.chat import DeliveryListParams
    from tether.protocol.methods import DELIVERY_LIST

    try:
        params = msgspec.convert(
            {"states": state or None, "run_id": run, "conversation": conversation, "limit": limit},
            DeliveryListParams,
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid filter: {exc}") from None
    found = request(url, token, lambda c: c.call(DELIVERY_LIST, params))

    def human() -> None:
        if not found.deliveries:
            typer.echo("no deliveries")
            return
        rows = [
            [
                time.strftime("%m-%d %H:%M:%S", time.localtime(d.created_at)),
                d.conversation,
                d.kind,
                d.state,
                str(d.attempts),
                (d.last_error or "")[:60],
                d.text.replace("\n", " ")[:40],
            ]
            for d in found.deliveries
        ]
        typer.echo(table(["WHEN", "CONVERSATION", "KIND", "STATE", "TRIES", "ERROR", "TEXT"], rows))

    context.current().emit(found, human)
