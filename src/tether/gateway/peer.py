"""``Peer``: the gateway's view of one connection (who it is, what role it holds)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from tether.gateway.auth import Principal
from tether.protocol.methods import Method
from tether.transport.connection import Connection, Handler
from tether.types import Role

__all__ = ["Peer"]


class Peer:
    """A connected client or runner, after authentication and before/after ``hello``."""

    def __init__(
        self,
        conn: Connection,
        principal: Principal,
        lookup: Callable[[str], Callable[..., Any] | None],
        *,
        transport: str,
        remote: str,
    ) -> None:
        self.conn = conn
        self.principal = principal
        self.lookup = lookup
        """Method name -> its gateway handler (from the method handler table)."""
        self.transport = transport
        self.remote = remote
        self.role: Role | None = None
        self.protocol = 0
        self.agent = ""
        self.runner_id: str | None = principal.runner_id
        self.subscriptions: dict[str, Any] = {}
        """Event subscriptions of this connection, by id (closed with it)."""
        self._bound: dict[str, Handler] = {}

    @property
    def role_name(self) -> str:
        return self.role.value if self.role is not None else "none"

    def route(self, method: Method[Any, Any]) -> Handler | None:
        bound = self._bound.get(method.name)
        if bound is None:
            fn = self.lookup(method.name)
            if fn is None:
                return None
            bound = self._bound[method.name] = functools.partial(fn, self)
        return bound

    def __repr__(self) -> str:
        return f"<Peer {self.conn.name} {self.principal.id} role={self.role_name}>"
