"""``tether chat``: talk to agents from this terminal, or pick up a chat's session here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, open_client
from tether.cli.help import examples
from tether.errors import ConfigError

__all__ = ["chat", "register"]

CHAT_EPILOG = examples(
    "tether chat",
    "tether chat --session ses_0123abcd          # continue a session started elsewhere",
    "tether chat --conversation webhook.ops:chat-1   # the session a chat talks in now",
    "tether chat --url https://gw.example:8443 --token $TETHER_TOKEN",
    "tether chat --transcript today.txt",
    after="Keys: Enter sends; a / s / d answer an approval (allow once, allow for this "
    "session, deny); a question is answered by typing (or a choice's number); Ctrl-C stops "
    "the current run after asking (else clears the line); Ctrl-D or /quit leaves (runs go "
    "on). Tab completes / commands, ↑ recalls history. Exit status: 0 when left; 1 when it "
    "cannot connect or attach.",
)


def chat(
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="SESSION_ID", help="Attach to this session.", show_default=False
        ),
    ] = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation",
            metavar="KEY",
            help="Attach to the session a chat talks in (channel:chat_id, see `tether sessions "
            "list`); /new here starts a new one there too.",
            show_default=False,
        ),
    ] = None,
    transcript: Annotated[
        Path | None,
        typer.Option(
            "--transcript",
            metavar="FILE",
            help="Also append what is shown to FILE, as plain text.",
            show_default=False,
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Talk to agents from this terminal: replies stream in, tool calls show their output,
    and approvals and questions are answered right here.

    Without --session or --conversation you talk in your own terminal conversation (the
    same one next time). Everyone attached to a session (a chat, the console, other
    terminals) sees the same events live. A dropped connection reconnects by itself and
    the stream resumes with nothing missed and nothing twice.
    """
    if session and conversation:
        raise ConfigError("give --session or --conversation, not both")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError(
            "tether chat needs a terminal; in scripts use `tether runs start TEXT --follow`"
        )
    from tether.cli.chat.app import ChatApp, Target
    from tether.cli.chat.link import ChatLink

    cli = context.current()
    config = cli.config()
    history = config.data_path / "chat-history"
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        history = None  # type: ignore[assignment]
    lang = "zh" if os.environ.get("LANG", "").startswith("zh") else "en"

    async def go() -> int:
        link = ChatLink(lambda router: open_client(config, url, token, router=router))
        out = transcript.open("a", encoding="utf-8") if transcript else None
        try:
            app = ChatApp(
                link,
                Target(session_id=session, conversation=conversation),
                lang=lang,
                history=history,
                transcript=out,
            )
            return await app.main()
        finally:
            if out is not None:
                out.close()

    raise typer.Exit(context.run_async(go()))


def register(app: typer.Typer) -> None:
    app.command(name="chat", epilog=CHAT_EPILOG)(chat)
