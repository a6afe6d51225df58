"""``tether feishu setup``: connect a Feishu/Lark app: check it against the open API, say
what it still needs, and write ``[channels.feishu]`` into the config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli import context
from tether.cli.help import examples
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.channels.feishu.setup import Report
    from tether.config import FeishuConfig

__all__ = ["feishu_app"]

feishu_app = typer.Typer(
    help="The Feishu/Lark channel (docs/feishu.md).",
    no_args_is_help=True,
    epilog=examples("tether feishu setup", "tether feishu setup --app-id cli_a1b2 --no-input"),
)


@feishu_app.command(
    "setup",
    epilog=examples(
        "tether feishu setup   # asks for what it needs",
        "TETHER_FEISHU_APP_SECRET=... tether feishu setup --app-id cli_a1b2 --domain lark "
        "--no-input",
        "tether feishu setup --mode webhook --no-write --json",
    ),
)
def setup(
    app_id: Annotated[
        str | None,
        typer.Option("--app-id", metavar="ID", help="The app's id (cli_…) from the console."),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            metavar="DOMAIN",
            help="feishu (open.feishu.cn), lark (open.larksuite.com), or an https URL.",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="MODE",
            help="long_connection (tether dials Feishu; no public URL) or webhook.",
        ),
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option(
            "--secret-env",
            metavar="NAME",
            help="The environment variable holding the app secret "
            "(default: TETHER_FEISHU_APP_SECRET). The secret is never written to a file.",
        ),
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write/--no-write",
            help="Write [channels.feishu] into the config file once the credentials work.",
        ),
    ] = True,
    no_input: Annotated[
        bool,
        typer.Option("--no-input", help="Never ask: take everything from flags and the config."),
    ] = False,
) -> None:
    """Check a Feishu/Lark app and write its settings: credentials, bot, permissions
    (which are missing) and, in long-connection mode, the connection; then the events
    to subscribe to. Exits 1 when something the channel needs is missing."""
    import asyncio

    import msgspec

    from tether.channels.feishu.setup import check_app
    from tether.config import FeishuConfig

    cli = context.current()
    current = cli.config().channels.feishu
    ask = not no_input and sys.stdin.isatty()
    app_id = app_id or _ask(ask, "App ID (cli_…)", current.app_id or None, "--app-id")
    domain = domain or (_ask(ask, "Domain: feishu, lark or a URL", current.domain) if ask else None)
    mode = mode or (
        _ask(ask, "Mode: long_connection or webhook", current.mode) if ask else current.mode
    )
    secret_env = secret_env or current.app_secret_env
    try:
        wanted = msgspec.convert(
            {
                **msgspec.to_builtins(current),
                "app_id": app_id,
                "domain": domain or current.domain,
                "mode": mode,
                "app_secret_env": secret_env,
            },
            FeishuConfig,
        )
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"[channels.feishu]: {exc}") from None
    secret = os.environ.get(secret_env) or None
    typed = False
    if secret is None:
        if not ask:
            raise ConfigError(f"the app secret is read from ${secret_env}: set it, then try again")
        secret = typer.prompt("App secret (not stored)", hide_input=True)
        typed = True
    report = asyncio.run(
        check_app(
            wanted.app_id,
            secret,
            base_url=wanted.base_url,
            mode=wanted.mode,
            group_trigger=wanted.group_trigger,
            streaming=wanted.streaming,
            timeout=wanted.request_timeout,
        )
    )
    credentials = next((c for c in report.checks if c.name == "credentials"), None)
    written: Path | None = None
    if write and credentials is not None and credentials.ok:
        written = _write_section(cli, wanted, current)
    data = {
        **report.as_json(),
        "app_id": wanted.app_id,
        "domain": wanted.domain,
        "mode": wanted.mode,
        "config_file": str(written) if written else None,
    }
    cli.emit(data, lambda: _print(report, wanted, written, secret_env, typed))
    if not report.ok:
        raise SystemExit(1)


def _ask(ask: bool, question: str, default: str | None, flag: str = "") -> str:
    if ask:
        return str(typer.prompt(question, default=default))
    if default:
        return default
    raise ConfigError(f"{flag} is needed (or run this in a terminal to be asked)")


def _config_file(cli: context.Cli) -> Path:
    explicit = cli.config_file or os.environ.get("TETHER_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return cli.config().config_path / "config.toml"


def _write_section(cli: context.Cli, wanted: FeishuConfig, current: FeishuConfig) -> Path:
    """``[channels.feishu]`` updated in place (comments and the rest of the file kept)."""
    import tomlkit

    path = _config_file(cli)
    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    channels: Any = doc.setdefault("channels", tomlkit.table(is_super_table=True))
    section: Any = channels.setdefault("feishu", tomlkit.table())
    section["app_id"] = wanted.app_id
    section["domain"] = wanted.domain
    section["mode"] = wanted.mode
    if wanted.app_secret_env != current.app_secret_env or "app_secret_env" in section:
        section["app_secret_env"] = wanted.app_secret_env
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(tomlkit.dumps(doc), encoding="utf-8")
    temporary.replace(path)
    return path


def _print(
    report: Report, wanted: FeishuConfig, written: Path | None, secret_env: str, typed: bool
) -> None:
    from tether.channels.feishu.setup import EVENTS

    typer.echo(f"Feishu app {wanted.app_id} on {wanted.base_url} ({wanted.mode})")
    for check in report.checks:
        typer.echo(f"  {'✓' if check.ok else '✗'} {check.name}: {check.detail}")
    if report.missing:
        typer.echo("\nAdd these permissions (developer console → Permissions & Scopes):")
        for scope in report.missing:
            need = "needed" if scope.required else "optional"
            typer.echo(f"  {scope.names[0]:<36} {need}: {scope.why}")
    typer.echo(
        "\nSubscribe to these events (developer console → Events & Callbacks; tether cannot "
        "read an app's subscriptions, so check them there):"
    )
    for event, why in EVENTS:
        typer.echo(f"  {event:<36} {why}")
    if wanted.mode == "webhook":
        typer.echo(
            "\nWebhook mode: set the request URL to https://YOUR-GATEWAY/channels/feishu, turn "
            f"on encryption, and give the gateway ${wanted.encrypt_key_env} and "
            f"${wanted.verification_token_env}."
        )
    else:
        typer.echo(
            '\nLong connection: choose "Receive events through persistent connection" '
            "(no public URL needed)."
        )
    if written is not None:
        typer.echo(f"\nWrote [channels.feishu] to {written}.")
    if typed:
        typer.echo(f"The gateway reads the secret from ${secret_env}: set it where it starts.")
    typer.echo(
        "\nReady: start the gateway (tether up) and message the bot."
        if report.ok
        else "\nNot ready yet: fix what is marked ✗ above, then run this again."
    )
