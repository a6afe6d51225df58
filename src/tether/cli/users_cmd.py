"""``tether users``: add people with a role, list them, revoke their login tokens, and link
their chat identities (owner)."""

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
    help="Add, list and revoke users and their login tokens, and link their chat "
    "identities (owner).",
    no_args_is_help=True,
    epilog=examples(
        "tether users add alice                  # a member: starts runs, decides their own",
        "tether users add bob --role viewer",
        "tether users list",
        "tether users link alice --channel webhook.ops --id U123",
        "tether users pair                        # a code to send from your chat: /pair CODE",
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
    """List users: name, role, status, when added, linked chat identities."""
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
        for row, u in zip(rows, found.users, strict=True):
            row.append(", ".join(u.links) or "-")
        typer.echo(table(["NAME", "ROLE", "STATUS", "ADDED", "ID", "CHATS"], rows))

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


ChannelOpt = Annotated[
    str,
    typer.Option(
        "--channel",
        metavar="CHANNEL",
        help="The channel: webhook.NAME for a [channels.webhook.NAME], or feishu.",
    ),
]
IdOpt = Annotated[
    str,
    typer.Option(
        "--id", metavar="ID", help="The person's id on that channel (shown in tether's refusal)."
    ),
]


@users_app.command(
    "link",
    epilog=examples(
        "tether users link alice --channel webhook.ops --id U123",
        "tether users link carol --channel feishu --id ou_4f2a...",
    ),
)
def link(
    user: Annotated[str, typer.Argument(metavar="USER", help="Name or id.")],
    channel: ChannelOpt,
    id_: IdOpt,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Link a chat identity to a user: tether answers that person as USER (their role,
    their runs, their approvals). Anyone not linked gets one polite refusal."""
    from tether.protocol.chat import UserLinkParams
    from tether.protocol.methods import USER_LINK

    params = UserLinkParams(user=user, channel=channel, id=id_)
    linked = request(url, token, lambda c: c.call(USER_LINK, params))
    context.current().emit(
        linked, f"{linked.channel} identity {linked.id} is now {linked.user_name}"
    )


@users_app.command("unlink", epilog=examples("tether users unlink --channel webhook.ops --id U123"))
def unlink(
    channel: ChannelOpt,
    id_: IdOpt,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a chat identity's link: tether stops answering that person."""
    from tether.protocol.chat import UserUnlinkParams
    from tether.protocol.methods import USER_UNLINK

    params = UserUnlinkParams(channel=channel, id=id_)
    gone = request(url, token, lambda c: c.call(USER_UNLINK, params))
    context.current().emit(gone, f"{gone.channel} identity {gone.id} is no longer {gone.user_name}")


@users_app.command(
    "pair",
    epilog=examples(
        "tether users pair            # pair yourself (the owner) from your chat",
        "tether users pair alice      # a code for alice to send from her chat",
    ),
)
def pair(
    user: Annotated[
        str | None,
        typer.Argument(
            metavar="[USER]", help="Name or id (default: a user called owner, made if missing)."
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a one-time pairing code: whoever sends /pair CODE from a chat within its life
    (10 minutes by default) is linked to USER. Give it only to that person."""
    from tether.protocol.chat import UserPairParams
    from tether.protocol.methods import USER_PAIR

    made = request(url, token, lambda c: c.call(USER_PAIR, UserPairParams(user=user)))
    minutes = max(1, round((made.expires_at - time.time()) / 60))
    context.current().emit(
        made,
        f"Send this from the chat, within {minutes} min, to be linked as {made.user_name}:\n\n"
        f"  /pair {made.code}\n\nIt works once.",
    )
