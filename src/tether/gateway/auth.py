"""Who is connecting: bearer token -> :class:`Principal` -> the roles it may take.

People are the admin token and same-uid local connections (both the local owner) and
users with login tokens (``tether users add``); runners have runner credentials.

Fails closed: an empty, unknown, malformed or revoked token is no principal. Each
source of credentials is an :class:`Authenticator`; the gateway asks them in turn.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tether.errors import NotFound
from tether.ledger import Ledger, UserRecord
from tether.security.credentials import parse_runner_credential, parse_user_token, verify_secret
from tether.types import Role, UserRole

__all__ = [
    "ADMIN_TOKEN_FILE",
    "AdminTokenAuthenticator",
    "Authenticator",
    "ChainAuthenticator",
    "Principal",
    "RunnerAuthenticator",
    "UserAuthenticator",
    "ensure_admin_token",
    "local_admin",
    "owner_principal",
    "user_principal",
]

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
_ADMIN_PREFIX = "tta_"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated party and the roles it may take in ``hello``.

    A person (the admin token, a same-uid local connection, a login token) has a user
    role; a runner has none."""

    id: str
    roles: frozenset[Role]
    runner_id: str | None = None
    user_role: UserRole | None = None
    name: str = ""

    @property
    def is_owner(self) -> bool:
        return self.user_role == "owner"


_OWNER_ROLES = frozenset({Role.ADMIN, Role.CLIENT})


def local_admin() -> Principal:
    """The principal of a same-uid Unix-socket connection: the local owner."""
    return Principal("local-admin", _OWNER_ROLES, user_role="owner", name="local-admin")


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """Return the principal for ``token``, or None if this source does not know it."""
        ...


def ensure_admin_token(data_dir: Path) -> tuple[Path, bool]:
    """Create ``<data dir>/admin.token`` (0600) if missing; return (path, created)."""
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("tightening permissions of the admin token file", extra={"path": str(path)})
            path.chmod(0o600)
        return path, False
    token = _ADMIN_PREFIX + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path, True


class AdminTokenAuthenticator:
    """The admin token kept in the data dir, re-read whenever the file changes in any way
    (inode, size, modification or change time): a rotated token is noticed even when the
    copy kept the old mtime. An unreadable or undecodable file admits nobody as admin
    (and does not stop other credentials from being checked)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._token = ""

    def _current(self) -> str:
        try:
            st = self.path.stat()
        except OSError:
            self._seen, self._token = None, ""
            return ""
        seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if seen != self._seen:
            try:
                self._token = self.path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                log.error(
                    "! the admin token file cannot be read; nobody is admin until it is fixed",
                    extra={"path": str(self.path), "error": str(exc)},
                )
                self._token = ""
            self._seen = seen
        return self._token

    async def authenticate(self, token: str) -> Principal | None:
        expected = self._current()
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return owner_principal("admin")
        return None


class UserAuthenticator:
    """Login tokens (``ttu_<user id>.<secret>``) of active users, checked against the
    ledger's hash. Owners may take the ``admin`` connection role too."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def authenticate(self, token: str) -> Principal | None:
        parsed = parse_user_token(token)
        if parsed is None:
            return None
        user_id, secret = parsed
        try:
            user = await self.ledger.users.get(user_id)
        except NotFound:
            return None
        if user.status != "active" or not verify_secret(secret, user.token_hash):
            return None
        return user_principal(user)


def user_principal(user: UserRecord) -> Principal:
    """The principal of a user (signed in with a login token, or linked on a channel)."""
    roles = _OWNER_ROLES if user.role == "owner" else frozenset({Role.CLIENT})
    return Principal(user.id, roles, user_role=user.role, name=user.name)


def owner_principal(principal_id: str) -> Principal | None:
    """The principal of the admin token or a local connection, by id (else None)."""
    if principal_id == "local-admin":
        return local_admin()
    if principal_id == "admin":
        return Principal("admin", _OWNER_ROLES, user_role="owner", name="admin")
    return None


class RunnerAuthenticator:
    """Runner credentials (``ttr_<id>.<secret>``), checked against the ledger's hash."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def authenticate(self, token: str) -> Principal | None:
        parsed = parse_runner_credential(token)
        if parsed is None:
            return None
        runner_id, secret = parsed
        try:
            record = await self.ledger.runners.get(runner_id)
        except NotFound:
            return None
        if record.status != "enrolled" or not verify_secret(secret, record.credential_hash):
            return None
        return Principal(f"runner:{record.name}", frozenset({Role.RUNNER}), runner_id=record.id)


class ChainAuthenticator:
    """Asks each authenticator in turn; the first that knows the token wins."""

    def __init__(self, sources: Sequence[Authenticator]) -> None:
        self.sources = list(sources)

    async def authenticate(self, token: str) -> Principal | None:
        if not token:
            return None
        for source in self.sources:
            principal = await source.authenticate(token)
            if principal is not None:
                return principal
        return None
