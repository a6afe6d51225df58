"""Redaction: secrets never reach the ledger or the logs.

- :func:`redact` masks every secret kind of :mod:`tether.security.secret_kinds` in free
  text (tether credentials as a whole, vendor keys, JWTs, PEM private-key blocks,
  bearer headers, URL passwords, ``password=…``/``"token": "…"`` assignments).
- :func:`redact_value` walks decoded data (dicts, lists, strings): values under keys
  named like secrets are masked whole, keys and strings are redacted as text, and data
  nested deeper than :data:`MAX_DEPTH` is masked (fail closed).
- :func:`redact_json` redacts JSON text *as data* (decode, redact, encode), so the
  result is still valid JSON and an escaped ``\\n`` cannot hide a secret from a pattern.
- :class:`RedactingFilter` applies them to every log record (message, arguments,
  structured fields and the formatted traceback) before any handler sees it.

Streamed output, which arrives in arbitrary chunks, goes through
:class:`tether.security.stream_redaction.StreamRedactor`.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from typing import Any

import msgspec

from tether.security.secret_kinds import triggered

__all__ = ["MASK", "MAX_DEPTH", "RedactingFilter", "redact", "redact_json", "redact_value"]

MASK = "[redacted]"
MAX_DEPTH = 64
"""Data nested deeper than this is masked rather than walked."""

_SECRET_KEY = re.compile(
    r"(?i)(secret|passw(or)?d|passphrase|pwd|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|^token$|[_-]token$|credential|authorization|cookie|session[_-]?key)"
)
_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


_QUOTES = ('\\"', "\\'", '"', "'")


def _replace(m: re.Match[str]) -> str:
    groups = m.groupdict()
    keep = groups.get("keep") or ""
    value = groups.get("value") or ""
    for q in _QUOTES:  # one quoted string keeps its quotes: "password": "[redacted]"
        if len(value) >= 2 * len(q) and value.startswith(q) and value.endswith(q):
            if value.count(q[-1]) == 2:
                return f"{keep}{q}{MASK}{q}"
            break
    close = groups.get("close") or ""
    return f"{keep}{MASK}{close}"


def redact(text: str) -> str:
    """Mask secrets in free text."""
    if not text:
        return text
    if len(text) <= _SHORT:
        return _redact_short(text)
    return _redact(text)


def _redact(text: str) -> str:
    for kind in triggered(text):
        text = kind.sub(_replace, text)
    return text


_SHORT = 64
_redact_short = functools.lru_cache(maxsize=4096)(_redact)
"""Short strings (mapping keys, names, codes) repeat: their answers are remembered."""


@functools.lru_cache(maxsize=4096)
def _key(key: str) -> tuple[str, bool]:
    """A mapping key redacted, and whether it names a secret (keys repeat: cached)."""
    return redact(key), _SECRET_KEY.search(key) is not None


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (its value is then masked whole)."""
    return _key(key)[1]


def redact_value(value: Any, _depth: int = 0) -> Any:
    """Mask secrets inside strings, lists and dicts (see the module docstring)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict | list | tuple) and _depth >= MAX_DEPTH:
        return MASK
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                key, secret = _key(k)
                if secret and v is not None and v != "":
                    out[key] = MASK
                    continue
            else:
                key = k
            out[key] = redact_value(v, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, _depth + 1) for v in value)
    return value


def redact_json(raw: bytes | str) -> str:
    """JSON text with secrets masked, still valid JSON; text that is not JSON is redacted
    as text."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        data = _decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return redact(text)
    masked = redact_value(data)
    return text if masked == data else _encode(masked).decode()


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: redact_value(v) for k, v in record.args.items()}
            else:
                record.args = tuple(redact_value(a) for a in record.args)
        if record.exc_info:
            # format the traceback now, redacted; formatters print exc_text as it is
            record.exc_text = redact(
                "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _LOG_FIELDS_SKIP:
                continue
            if isinstance(value, str | dict | list | tuple):
                record.__dict__[key] = (
                    MASK if _SECRET_KEY.search(key) and value else redact_value(value)
                )
            elif isinstance(value, BaseException):
                record.__dict__[key] = redact(repr(value))
        return True


_LOG_FIELDS_SKIP = frozenset(
    {
        "msg",
        "args",
        "name",
        "levelname",
        "pathname",
        "filename",
        "module",
        "funcName",
        "threadName",
        "processName",
        "exc_info",
        "exc_text",
        "stack_info",
        "taskName",
    }
)
