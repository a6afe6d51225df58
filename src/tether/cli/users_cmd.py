"""``tether users``: add people with a role, list them, revoke their login tokens (owner)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table

__all__ = ["users_app"]

users_app = typer.Typer(
    help="Add, list and revoke users and their login tokens (owner).",
    no_args_is_help=True,
    epilog=examples(
        "tether users add alice                  # a member: starts runs, decides their own",
        "tether users add bob --role viewer",
        "tether users list",
        "tether users revoke alice",
    ),
)


@users_app.command(
    "add",
    epilog=examples(
        "tether users add alice",
        "tether users add carol --role owner",
        "tether users add bot --role viewer --json",
    ),
)
def add(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="A unique name (letters, digits, . _ @ -).")
    ],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            metavar="ROLE",
            help="owner (everything), member (starts runs, decides requests on their own "
            "runs) or viewer (reads their own).",
        ),
    ] = "member",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Add a user and print their login token once (it is stored only as a hash)."""
    import msgspec

    from tether.errors import ConfigError
    from tether.protocol.access import UserAddParams
    from tether.protocol.methods import USER_ADD

    try:
        params = msgspec.convert({"name": name, "role": role}, UserAddParams)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid user: {exc}") from None
    added = request(url, token, lambda c: c.call(USER_ADD, params))
    context.current().emit(
        added,
        f"user {added.user.name} ({added.user.role}) added. Their login token, shown once:\n\n"
        f"  {added.token}\n\n"
        "They connect with --url URL --token TOKEN (or TETHER_TOKEN). Keep it secret; "
        f"`tether users revoke {added.user.name}` ends it.",
    )


@users_app.command("list", epilog=examples("tether users list", "tether users list --json"))
def list_(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List users: name, role, status, when added."""
    from tether.protocol.methods import USER_LIST
    from tether.protocol.system import Empty

    found = request(url, token, lambda c: c.call(USER_LIST, Empty()))

    def human() -> None:
        if not found.users:
            typer.echo(
                "no users yet (the admin token is the owner; add people with `tether users add NAME`)"
            )
            return
        rows = [
            [
                u.name,
                u.role,
                u.status,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(u.created_at)),
                u.id,
            ]
            for u in found.users
        ]
        typer.echo(table(["NAME", "ROLE", "STATUS", "ADDED", "ID"], rows))

    context.current().emit(found, human)


@users_app.command("revoke", epilog=examples("tether users revoke alice"))
def revoke(
    user: Annotated[str, typer.Argument(metavar="USER", help="Name or id.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a user's login token: it stops working and their connections close at once."""
    from tether.protocol.access import UserRevokeParams
    from tether.protocol.methods import USER_REVOKE

    info = request(url, token, lambda c: c.call(USER_REVOKE, UserRevokeParams(user=user)))
    context.current().emit(info, f"user {info.name} revoked")
