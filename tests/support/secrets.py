"""Secrets of every kind tether must keep out of the ledger and the logs (all fake).

Each sample is fresh random text, so a scan for it finds only a leak, never a
coincidence, and one test's leak cannot hide another's.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass

__all__ = ["Sample", "secret_samples"]

_ALNUM = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Sample:
    kind: str
    text: str
    """How a tool or a user might print it."""
    secrets: tuple[str, ...]
    """The parts that must never be stored or logged."""


def _token(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_random.choice(alphabet) for _ in range(n))


def secret_samples() -> list[Sample]:
    """One fresh sample of each secret kind."""
    out: list[Sample] = []

    def add(kind: str, template: str, *parts: str) -> None:
        out.append(Sample(kind, template.format(*parts), parts))

    add("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{}.{}", _token(20), _token(32))
    add("openai", "OPENAI_API_KEY sk-proj-{}", _token(40))
    add("github_classic", "ghp_{}", _token(36))
    add("github_fine", "github_pat_{}_{}", _token(22), _token(59))
    add("aws_key_id", "AKIA{}", _token(16, _UPPER))
    add("aws_secret", "aws_secret_access_key = {}", _token(40))
    add("slack", "xoxb-1234567890-987654321-{}", _token(24))
    add("huggingface", "hf_{}", _token(34))
    add("quoted_assignment", "DB_PASSWORD='{}'", _token(18))
    add("json_password", '{{"password": "{}"}}', _token(18))
    add("url_password", "postgresql://app:{}@db.internal/app", _token(20))
    add("bearer", "Authorization: Bearer {}", _token(40))
    add(
        "pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADAN{}\n{}\n{}\n-----END RSA PRIVATE KEY-----",
        _token(52),
        _token(64),
        _token(64),
    )
    return out
