"""State shared by every command: global flags, config loading, output and errors.

Imports stay light here (no asyncio, msgspec or config at module import): ``tether
--help`` and every command import this module first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from tether.errors import ConfigError, TetherError

if TYPE_CHECKING:
    import logging

    from tether.config import Config

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
        from tether.config import load_config
        from tether.logs import configure_logging

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
            import msgspec

            sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        elif isinstance(human, str):
            sys.stdout.write(human + "\n")
        else:
            human()
        sys.stdout.flush()

    def fail(self, exc: TetherError, code: int | None = None) -> NoReturn:
        """Report an error the way the output mode asks and exit with ``code``
        (default: 2 for config errors, else 1)."""
        if code is None:
            code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
        if self.json:
            import json

            sys.stdout.write(
                json.dumps({"error": {"code": exc.code, "message": exc.message, **exc.data}}) + "\n"
            )
        else:
            sys.stderr.write(f"error: {exc.message}\n")
        raise SystemExit(code)


def _log_filters() -> list[logging.Filter]:
    """The redaction filter, built at the first record that reaches it: every record is
    still redacted, and a command that logs nothing (``tether ping``) skips compiling
    the secret patterns."""
    import logging

    class LazyRedaction(logging.Filter):
        def __init__(self) -> None:
            super().__init__()
            self._filter: logging.Filter | None = None

        def filter(self, record: logging.LogRecord) -> bool:
            if self._filter is None:
                from tether.security.redaction import RedactingFilter

                self._filter = RedactingFilter()
            return bool(self._filter.filter(record))

    return [LazyRedaction()]


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
        import asyncio

        return asyncio.run(coro)
    return uvloop.run(coro)
