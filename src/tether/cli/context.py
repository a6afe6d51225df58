"""State shared by every command: global flags, config loading, output and errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import msgspec

from tether.config import Config, load_config
from tether.errors import ConfigError, TetherError
from tether.logs import configure_logging

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "Cli", "current", "run_async"]

T = TypeVar("T")
EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class Cli:
    """Global options; one instance per invocation."""

    json: bool = False
    log_level: str | None = None
    log_format: str | None = None
    config_file: str | None = None
    data_dir: str | None = None
    _config: Config | None = field(default=None, repr=False)

    def config(self, **flags: Any) -> Config:
        """Load the effective config; command flags (None = not given) win over everything."""
        tree: dict[str, Any] = {}
        if self.data_dir is not None:
            tree["data_dir"] = self.data_dir
        if self.log_level is not None:
            tree["log_level"] = self.log_level
        if self.log_format is not None:
            tree["log_format"] = self.log_format
        for dotted, value in flags.items():
            if value is None:
                continue
            node = tree
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        self._config = load_config(config_file=self.config_file, flags=tree)
        configure_logging(self._config.log_level, self._config.log_format, filters=_log_filters())
        return self._config

    def emit(self, data: Any, human: Callable[[], None] | str) -> None:
        """Print ``data`` as JSON with ``--json``, else the human rendering."""
        if self.json:
            sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        elif isinstance(human, str):
            sys.stdout.write(human + "\n")
        else:
            human()
        sys.stdout.flush()

    def fail(self, exc: TetherError) -> NoReturn:
        """Report an error the way the output mode asks and exit (2 for config errors, else 1)."""
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
        if self.json:
            sys.stdout.write(
                json.dumps({"error": {"code": exc.code, "message": exc.message, **exc.data}}) + "\n"
            )
        else:
            sys.stderr.write(f"error: {exc.message}\n")
        raise SystemExit(code)


def _log_filters() -> list[Any]:
    from tether.security.redaction import RedactingFilter

    return [RedactingFilter()]


_current = Cli()


def current() -> Cli:
    return _current


def set_current(cli: Cli) -> None:
    global _current
    _current = cli


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
