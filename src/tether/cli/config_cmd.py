"""``tether config``: inspect the effective configuration."""

from __future__ import annotations

import typer

from tether.cli import context
from tether.cli.help import examples

__all__ = ["app"]

app = typer.Typer(
    help="Inspect the effective configuration.",
    no_args_is_help=True,
    epilog=examples("tether config show"),
)


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return '""  # unset'
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(value, ensure_ascii=False)


@app.command(
    "show",
    epilog=examples(
        "tether config show",
        "tether config show --config ./tether.toml --json",
        "TETHER_LIMITS__IDLE_TIMEOUT=30 tether config show",
    ),
)
def show() -> None:
    """Print the effective config (defaults < file < TETHER_* env < flags), secrets redacted."""
    from tether.config import redacted

    cli = context.current()
    data = redacted(cli.config())

    def human() -> None:
        top = {k: v for k, v in data.items() if not isinstance(v, dict)}
        for key, value in top.items():
            typer.echo(f"{key} = {_toml_value(value)}")
        for section, values in data.items():
            if isinstance(values, dict):
                typer.echo(f"\n[{section}]")
                for key, value in values.items():
                    typer.echo(f"{key} = {_toml_value(value)}")

    cli.emit(data, human)
