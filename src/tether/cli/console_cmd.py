"""``tether console``: a one-time link into the web console of a gateway already running
(one started by ``tether gateway`` or as a service, which prints no link of its own)."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples

__all__ = ["open_link", "register"]


def console(
    url: UrlOpt = None,
    token: TokenOpt = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the link in the browser as well.")
    ] = False,
) -> None:
    """Print a link that logs a browser into the web console once, as you.

    Over the local Unix socket by default (you are then the local owner); with --url and
    --token, as whoever the token is.
    """
    from tether.protocol.methods import CONSOLE_LINK
    from tether.protocol.system import Empty

    cli = context.current()
    link = request(url, token, lambda c: c.call(CONSOLE_LINK, Empty()))
    minutes = max(1, round((link.expires_at - time.time()) / 60))
    cli.emit(
        {"url": link.url, "expires_at": link.expires_at},
        f"Open the console (this link logs in once, within {minutes} minutes):\n  {link.url}",
    )
    if open_browser:
        open_link(link.url)


def open_link(url: str) -> None:
    """Open a console link in the person's browser (the standard library's choice, or
    $BROWSER)."""
    import webbrowser

    if not webbrowser.open(url):
        sys.stderr.write("no browser could be started: open the link above yourself\n")


def register(app: typer.Typer) -> None:
    app.command(
        name="console",
        epilog=examples(
            "tether console",
            "tether console --open",
            "tether console --url https://gw.example.com --token ttu_… --json",
            after="The key is in the link's fragment (after #), which a browser never sends "
            "to a server; the gateway keeps it only in memory, so a restart forgets it. Exit "
            "status: 0 when a link was printed; 1 when the gateway cannot be reached or "
            "refuses the token.",
        ),
    )(console)
