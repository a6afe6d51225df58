"""Redaction: secrets never reach the ledger or the logs.

:func:`redact` masks anything that looks like a tether credential, a bearer token, a
JWT, or the password part of a URL. :class:`RedactingFilter` applies it to every log
record (message, arguments and structured fields) before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["MASK", "RedactingFilter", "redact", "redact_value"]

MASK = "[redacted]"

_PATTERNS = [
    # tether credentials: admin token, runner credential, enrolment code, login token
    re.compile(r"\btt[a-z]_[A-Za-z0-9_\-]{16,}"),
    # Authorization headers and "token=..." style assignments
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]+=*"),
    re.compile(r"(?i)((?:api[_-]?key|secret|token|password|passwd)\s*[=:]\s*)[^\s,;\"']+"),
    # JWTs (three base64url parts)
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    # OpenAI-style and similar vendor keys
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
]
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """Mask secrets in free text."""
    if not text:
        return text
    out = _URL_PASSWORD.sub(r"\1" + MASK + "@", text)
    for pattern in _PATTERNS:
        out = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, out)
    return out


def redact_value(value: Any) -> Any:
    """Mask secrets inside strings, lists and dicts (keys named like secrets are masked whole)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


_SECRET_KEY = re.compile(
    r"(?i)(secret|password|passwd|api[_-]?key|^token$|credential|authorization)"
)


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
        for key, value in list(record.__dict__.items()):
            if key in _LOG_FIELDS_SKIP:
                continue
            if isinstance(value, str | dict | list):
                record.__dict__[key] = (
                    MASK if _SECRET_KEY.search(key) and value else redact_value(value)
                )
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
        "exc_text",
        "stack_info",
        "taskName",
    }
)
