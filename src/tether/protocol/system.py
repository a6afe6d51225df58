"""Params and results of the connection-level methods: ``ping`` and ``gateway.info``."""

from __future__ import annotations

import msgspec

__all__ = ["Empty", "GatewayInfo", "PingParams", "Pong", "TransportInfo"]


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    """No params, or a result with nothing to say."""


class PingParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    payload: str = ""
    """Echoed back; lets a benchmark send frames of a chosen size."""


class Pong(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server_time: float
    """Gateway wall clock, seconds since the epoch."""
    version: str
    payload: str = ""


class TransportInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    address: str
    connections: int
    max_connections: int


class GatewayInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    version: str
    protocol: int
    pid: int
    started_at: float
    uptime: float
    url: str
    socket: str
    data_dir: str
    transports: list[TransportInfo]
    ledger: str = ""
    """The ledger's engine: ``sqlite`` or ``postgresql`` (empty from an older gateway)."""


class ConsoleLink(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A one-time link that logs a browser into the web console as the caller."""

    url: str
    """The console's address with a ``ttc_`` key in its fragment (never sent to a server)."""
    expires_at: float
    """Unix time after which the link no longer logs in; it also works only once."""
