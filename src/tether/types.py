"""Identifiers and small shared vocabulary: connection roles, run states, session modes.

Ids are plain strings whose prefix says what they name (``run_01JD5…``, ``ses_…``,
``call_…``, ``rnr_…``). New ids are time-ordered (sortable by creation) and carry 80
random bits.
"""

from __future__ import annotations

import base64
import os
import time
from enum import StrEnum
from typing import Literal

__all__ = [
    "ROUTINE_NAME",
    "USER_ROLES",
    "CatchUp",
    "Role",
    "RunState",
    "SessionMode",
    "UserRole",
    "new_id",
]


class Role(StrEnum):
    """What a connection may do; fixed by ``hello`` and checked against the method table."""

    ADMIN = "admin"
    CLIENT = "client"
    RUNNER = "runner"


UserRole = Literal["owner", "member", "viewer"]
"""What a person may do: everything; start runs and decide requests on their own runs;
read their own work."""
USER_ROLES: tuple[UserRole, ...] = ("owner", "member", "viewer")

SessionMode = Literal["ask", "auto-read", "auto"]
"""How a session's tool calls are decided: ask a person for every call, allow reads and
ask for the rest, or allow by the rules alone (the policy gives these their meaning)."""

CatchUp = Literal["once", "skip"]
"""What a routine does about due times missed while no gateway ran: run once (for the
latest of them), or skip them."""
ROUTINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A routine's name: 1-64 of letters, digits, ``_ . -`` (not starting with a sign)."""


class RunState(StrEnum):
    """The states of a run; the legal moves between them are in ``tether.ledger.states``."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


_last = 0


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 26 Crockford base32 characters: 48 bits of ms time, 80 random bits.

    Ids from one process strictly increase, even within a millisecond, so ordering by id
    is ordering by creation.
    """
    global _last
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    if value <= _last:
        value = _last + 1
    _last = value
    # 130 bits (two leading zero bits) in standard base32, mapped onto Crockford's
    # alphabet, which sorts like the numbers it encodes.
    encoded = base64.b32encode((value << 6).to_bytes(17, "big"))[:26].decode()
    return f"{prefix}_{encoded.translate(_TO_CROCKFORD)}"
