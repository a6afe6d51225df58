"""Logging set-up: one line per record, text or JSON, with structured fields.

Structured fields are passed with ``extra=``: ``log.info("run started", extra={"run_id": r})``.
Text output renders them as ``key=value`` after the message; JSON output puts them at
the top level next to ``ts``, ``level``, ``logger`` and ``msg``. Filters given to
:func:`configure_logging` (the redaction step) see every record before any handler.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

import msgspec

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "fields_of"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_encoder = msgspec.json.Encoder()


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (its ``extra=`` keys)."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z INFO logger: message key=value …``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}:", record.getMessage()]
        for key, value in fields_of(record).items():
            text = str(value)
            parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(fields_of(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        return _encoder.encode(data).decode()

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei)


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    filters: Iterable[logging.Filter] = (),
) -> None:
    """Install one stream handler on the root logger (replacing earlier ones)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for f in filters:
        handler.addFilter(f)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party libraries are noisy at INFO; keep them at WARNING unless debugging.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("aiohttp.access", "asyncio", "sqlalchemy", "alembic", "aiosqlite"):
        logging.getLogger(name).setLevel(quiet)
