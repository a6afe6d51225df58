"""The method table: every method, its typed params and result, and who may call it.

This is the only place that says which role may call what. The gateway refuses a
request whose caller is not listed (``forbidden``); a runner refuses anything not sent
by the gateway. ``docs/protocol.md`` is generated from this table
(``python -m tether.protocol.docs``) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import msgspec

from tether.protocol.handshake import HelloParams, HelloResult
from tether.protocol.system import Empty, GatewayInfo, PingParams, Pong

__all__ = [
    "ADMIN",
    "ANY_ROLE",
    "CLIENTS",
    "FROM_GATEWAY",
    "GATEWAY_INFO",
    "HELLO",
    "METHODS",
    "PING",
    "Method",
    "register",
]

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")

ADMIN: Final = frozenset({"admin"})
CLIENTS: Final = frozenset({"admin", "client"})
ANY_ROLE: Final = frozenset({"admin", "client", "runner"})
RUNNERS: Final = frozenset({"runner"})
FROM_GATEWAY: Final = frozenset({"gateway"})


@dataclass(frozen=True, eq=False)
class Method(Generic[P, R]):
    """One method. ``result`` is ``None`` for a notification (no reply)."""

    name: str
    params: type[P]
    result: type[R] | None
    callers: frozenset[str]
    """Roles (``admin``, ``client``, ``runner``) or ``gateway`` that may send it."""
    summary: str
    params_decoder: msgspec.json.Decoder[P] = field(init=False, repr=False)
    result_decoder: msgspec.json.Decoder[Any] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params_decoder", msgspec.json.Decoder(self.params))
        decoder = msgspec.json.Decoder(self.result) if self.result is not None else None
        object.__setattr__(self, "result_decoder", decoder)

    @property
    def is_notification(self) -> bool:
        return self.result is None


METHODS: dict[str, Method[Any, Any]] = {}


def register(method: Method[P, R]) -> Method[P, R]:
    """Add a method to the table (each name once) and return it."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


HELLO = register(
    Method(
        "hello",
        HelloParams,
        HelloResult,
        ANY_ROLE,
        "First request on a connection: negotiate the protocol version and fix the role.",
    )
)
PING = register(
    Method(
        "ping", PingParams, Pong, ANY_ROLE, "Liveness check; answers with server time and version."
    )
)
GATEWAY_INFO = register(
    Method(
        "gateway.info",
        Empty,
        GatewayInfo,
        ADMIN,
        "Version, pid, uptime, addresses and connection counts of the gateway.",
    )
)
