"""Browser sessions of the web console: a login token in, an HttpOnly cookie out.

A browser logs in once with a login token (``POST /console/login``); from then on it
holds ``tether_console``, an HttpOnly, SameSite=Strict cookie that says who it is and
until when, signed (HMAC-SHA256) with a key kept in the data dir (``console.key``,
0600). The token itself is never stored by the browser nor by the gateway.

Each use checks the signature and the expiry in constant time, then the person again:
a revoked user's cookie admits nobody, at once. A state-changing request must also carry
the session's CSRF token (``X-CSRF-Token``), derived from the cookie with the same key,
and every cookie-authenticated request must come from the gateway's own origin. Rotating
the key (delete ``console.key``, restart) signs every browser out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tether.errors import ConfigError, NotFound
from tether.gateway.auth import Principal, owner_principal, user_principal
from tether.ledger import Ledger

__all__ = ["COOKIE", "CSRF_HEADER", "KEY_FILE", "ConsoleSession", "ConsoleSessions", "load_key"]

COOKIE = "tether_console"
CSRF_HEADER = "X-CSRF-Token"
KEY_FILE = "console.key"
_VERSION = "v1"


class _Claims(msgspec.Struct, forbid_unknown_fields=True):
    p: str
    """The principal."""
    e: float
    """Expires at (Unix seconds)."""
    n: str
    """A nonce: this login's own CSRF token derives from it."""


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    principal: Principal
    expires_at: float
    csrf: str


def load_key(data_dir: Path) -> bytes:
    """The signing key in ``<data dir>/console.key`` (made, 0600, if missing)."""
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = -1
    if fd < 0:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ConfigError(f"{path} holds too short a key: delete it to make a new one")
        return key
    key = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsoleSessions:
    """Issues and checks console cookies (see the module docstring)."""

    def __init__(self, key: bytes, ledger: Ledger, *, ttl: float = 12 * 3600) -> None:
        self._key = hashlib.sha256(b"tether console session\0" + key).digest()
        self._csrf_key = hashlib.sha256(b"tether console csrf\0" + key).digest()
        self.ledger = ledger
        self.ttl = ttl
        self._decoder = msgspec.json.Decoder(_Claims)

    def issue(
        self, principal: Principal, *, now: float | None = None
    ) -> tuple[str, ConsoleSession]:
        """A cookie value for ``principal`` and the session it stands for."""
        now = time.time() if now is None else now
        claims = _Claims(p=principal.id, e=round(now + self.ttl, 3), n=secrets.token_urlsafe(16))
        payload = _b64(msgspec.json.encode(claims))
        value = f"{_VERSION}.{payload}.{self._sign(payload)}"
        return value, ConsoleSession(principal, claims.e, self._csrf(claims.n))

    async def check(self, value: str, *, now: float | None = None) -> ConsoleSession | None:
        """The session of a cookie value, or None: malformed, forged, expired, or its
        person is gone or revoked."""
        claims = self._claims(value, time.time() if now is None else now)
        if claims is None:
            return None
        principal = owner_principal(claims.p)
        if principal is None:
            try:
                user = await self.ledger.users.get(claims.p)
            except NotFound:
                return None
            if user.status != "active":
                return None
            principal = user_principal(user)
        return ConsoleSession(principal, claims.e, self._csrf(claims.n))

    @staticmethod
    def csrf_ok(session: ConsoleSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode(), (presented or "").encode()
        )

    def _claims(self, value: str, now: float) -> _Claims | None:
        version, _, rest = value.partition(".")
        payload, _, signature = rest.partition(".")
        if version != _VERSION or not payload or not signature or len(value) > 1024:
            return None
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            return None
        try:
            claims = self._decoder.decode(_unb64(payload))
        except (ValueError, msgspec.DecodeError):
            return None
        return claims if claims.e > now else None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def _csrf(self, nonce: str) -> str:
        return _b64(hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).digest())
