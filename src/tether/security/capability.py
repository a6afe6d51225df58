"""Capability tokens: one Ed25519-signed JWT per tool call, bound to exactly that call.

The gateway signs with its private key (created 0600 at first start); a runner holds only
the gateway's public key, pinned at enrolment. Claims::

    iss  "tether-gateway"        aud  runner id           jti  unique token id
    iat  issued at (s)           exp  expiry (s, short)
    run  run id or ""            call call id             tool tool name
    args sha256 of the canonical JSON of the arguments
    ws   workspace name          paths allowed workspace-relative paths ("." = all)

:class:`CapabilityVerifier` rejects a bad signature, another audience, an expired or
replayed token, and any mismatch of call, tool, arguments or workspace, each with a
stable ``data["reason"]``. No token, no execution.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tether.errors import CapabilityDenied, ConfigError

__all__ = [
    "ISSUER",
    "Capability",
    "CapabilityIssuer",
    "CapabilityVerifier",
    "args_digest",
    "canonical_args",
    "load_or_create_signing_key",
    "new_token_id",
    "public_key_pem",
]

ISSUER = "tether-gateway"
_REQUIRED = ["iss", "aud", "jti", "iat", "exp", "call", "tool", "args", "ws"]


def canonical_args(args: Any) -> bytes:
    """The canonical JSON of tool arguments: sorted keys, no spaces, UTF-8."""
    return msgspec.json.encode(args, order="sorted")


def args_digest(args: Any) -> str:
    return hashlib.sha256(canonical_args(args)).hexdigest()


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the gateway's Ed25519 key (PEM), creating it 0600 on first use."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True, slots=True)
class Capability:
    """The verified (or freshly minted) claims of one token."""

    token_id: str
    runner_id: str
    run_id: str
    call_id: str
    tool: str
    args_sha256: str
    workspace: str
    paths: tuple[str, ...]
    issued_at: int
    expires_at: int


def _capability(claims: dict[str, Any]) -> Capability:
    return Capability(
        token_id=str(claims["jti"]),
        runner_id=str(claims["aud"]),
        run_id=str(claims.get("run", "")),
        call_id=str(claims["call"]),
        tool=str(claims["tool"]),
        args_sha256=str(claims["args"]),
        workspace=str(claims["ws"]),
        paths=tuple(str(p) for p in claims.get("paths", ["."])),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
    )


def new_token_id() -> str:
    """A fresh, unguessable token id (the ``jti`` claim)."""
    return secrets.token_urlsafe(16)


class CapabilityIssuer:
    """Mints tokens with the gateway's private key."""

    def __init__(self, key: Ed25519PrivateKey, *, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock
        self.public_pem = public_key_pem(key)

    def mint(
        self,
        *,
        runner_id: str,
        call_id: str,
        tool: str,
        args: Any,
        workspace: str,
        run_id: str = "",
        paths: Sequence[str] = (".",),
        ttl: int = 60,
        token_id: str | None = None,
        args_sha256: str | None = None,
    ) -> tuple[str, Capability]:
        """Sign a token for one call. ``token_id`` (from :func:`new_token_id`) and
        ``args_sha256`` (from :func:`args_digest`) may be chosen up front by a caller that
        records them before the token exists."""
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "aud": runner_id,
            "jti": token_id or new_token_id(),
            "iat": now,
            "exp": now + ttl,
            "run": run_id,
            "call": call_id,
            "tool": tool,
            "args": args_sha256 or args_digest(args),
            "ws": workspace,
            "paths": list(paths),
        }
        token = jwt.encode(claims, self._key, algorithm="EdDSA")
        return token, _capability(claims)


class CapabilityVerifier:
    """Checks tokens on the runner against the pinned public key. See the module docstring."""

    def __init__(
        self,
        public_pem: str,
        runner_id: str,
        *,
        clock: Callable[[], float] = time.time,
        leeway: float = 2.0,
        max_live_tokens: int = 100_000,
    ) -> None:
        key = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError("the pinned gateway key is not an Ed25519 public key")
        self._key = key
        self.runner_id = runner_id
        self._clock = clock
        self._leeway = leeway
        self._seen: dict[str, int] = {}
        self._max_live = max_live_tokens

    def verify(
        self,
        token: str | None,
        *,
        call_id: str,
        tool: str,
        args: Any,
        workspace: str,
        resend: bool = False,
    ) -> Capability:
        """Return the capability or raise CapabilityDenied (``data["reason"]`` says why).

        ``resend`` is for a call this runner already accepted (the gateway re-sent it
        after a reconnect): expiry and replay are not checked again, everything else is.
        """
        if not token:
            raise _denied("missing", "no capability token: nothing runs without one")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["EdDSA"],
                audience=self.runner_id,
                issuer=ISSUER,
                # times are checked below against our own clock
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise _denied("wrong_audience", "the token was issued for another runner") from exc
        except jwt.InvalidSignatureError as exc:
            raise _denied("bad_signature", "the token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise _denied("malformed", f"the token is not acceptable: {exc}") from exc
        try:
            cap = _capability(claims)
        except (KeyError, TypeError, ValueError) as exc:
            raise _denied("malformed", f"the token's claims are not acceptable: {exc}") from exc
        now = self._clock()
        if not resend and now > cap.expires_at + self._leeway:
            raise _denied("expired", "the token has expired")
        if cap.issued_at > now + self._leeway:
            raise _denied("not_yet_valid", "the token is not valid yet")
        if cap.call_id != call_id:
            raise _denied("wrong_call", "the token is bound to another call")
        if cap.tool != tool:
            raise _denied("wrong_tool", f"the token allows {cap.tool!r}, not {tool!r}")
        if cap.args_sha256 != args_digest(args):
            raise _denied(
                "args_mismatch", "the arguments differ from the ones the token was issued for"
            )
        if cap.workspace != workspace:
            raise _denied("wrong_workspace", "the token is bound to another workspace")
        if not resend:
            self._remember(cap)
        return cap

    def _remember(self, cap: Capability) -> None:
        now = int(self._clock())
        if cap.token_id in self._seen:
            raise _denied("replayed", "this token was already used")
        if len(self._seen) >= self._max_live or len(self._seen) % 1024 == 1023:
            # forget tokens that expired: they can no longer be replayed anyway
            self._seen = {k: exp for k, exp in self._seen.items() if exp + self._leeway >= now}
            if len(self._seen) >= self._max_live:
                raise _denied("replay_cache_full", "too many live tokens; refusing to run more now")
        self._seen[cap.token_id] = cap.expires_at


def _denied(reason: str, message: str) -> CapabilityDenied:
    return CapabilityDenied(message, data={"reason": reason})
