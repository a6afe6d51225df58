"""Runner credentials, login tokens and enrolment codes: random secrets, stored only as hashes.

A runner credential is ``ttr_<runner id>.<secret>`` and a login token
``ttu_<user id>.<secret>``: the id makes lookup direct, the
secret (256 bits) is compared against a SHA-256 hash in constant time. An enrolment
code is short enough to paste (``ABCD-EFGH-JKMN-PQRS``, 80 bits), works once, and
expires within minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = [
    "hash_secret",
    "new_enrolment_code",
    "new_secret",
    "normalize_code",
    "parse_runner_credential",
    "parse_user_token",
    "runner_credential",
    "user_token",
    "verify_secret",
]

_PREFIX = "ttr_"
_CREDENTIAL = re.compile(r"ttr_(rnr_[0-9A-HJKMNP-TV-Z]{1,40})\.([A-Za-z0-9_\-]{43})")
"""The whole credential: a runner id and exactly the secret :func:`new_secret` makes."""
_USER_TOKEN = re.compile(r"ttu_(usr_[0-9A-HJKMNP-TV-Z]{1,40})\.([A-Za-z0-9_\-]{43})")
"""A login token: ``ttu_<user id>.<secret>``, the secret as :func:`new_secret` makes it."""
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret (a slow KDF adds nothing for 256-bit randoms)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_secret() -> tuple[str, str]:
    """A fresh 256-bit secret and the hash to store for it."""
    secret = secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


def runner_credential(runner_id: str, secret: str) -> str:
    """The credential a runner presents: ``ttr_<runner id>.<secret>``."""
    return f"{_PREFIX}{runner_id}.{secret}"


def parse_runner_credential(credential: str) -> tuple[str, str] | None:
    """Split a credential into (runner id, secret), or None unless it is one as a whole
    (so no fragment, mask or look-alike passes for the secret)."""
    m = _CREDENTIAL.fullmatch(credential)
    if m is None:
        return None
    return m.group(1), m.group(2)


def new_enrolment_code() -> str:
    """Sixteen characters from an unambiguous alphabet, in groups of four."""
    chars = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


def normalize_code(code: str) -> str:
    """Upper-case, without spaces or dashes (so a code survives being retyped)."""
    return "".join(c for c in code.upper() if c.isalnum())


def user_token(user_id: str, secret: str) -> str:
    """The login token a user presents: ``ttu_<user id>.<secret>``."""
    return f"ttu_{user_id}.{secret}"


def parse_user_token(token: str) -> tuple[str, str] | None:
    """Split a login token into (user id, secret), or None unless it is one as a whole."""
    m = _USER_TOKEN.fullmatch(token)
    if m is None:
        return None
    return m.group(1), m.group(2)
