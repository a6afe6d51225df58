"""``Peer``: the gateway's view of one connection (who it is, what role it holds)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from tether.errors import Forbidden
from tether.gateway.auth import Principal
from tether.protocol.methods import Method
from tether.transport.connection import Connection, Handler
from tether.types import Role, UserRole

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

    @property
    def user_role(self) -> UserRole | None:
        """The person's role; None for a runner."""
        return self.principal.user_role

    @property
    def is_owner(self) -> bool:
        return self.principal.is_owner

    def route(self, method: Method[Any, Any]) -> Handler | None:
        bound = self._bound.get(method.name)
        if bound is None:
            fn = self.lookup(method.name)
            if fn is None:
                return None
            role = self.principal.user_role
            if role is not None and role not in method.users:
                bound = functools.partial(_forbidden, method.name, role)
            else:
                bound = functools.partial(fn, self)
            self._bound[method.name] = bound
        return bound

    def __repr__(self) -> str:
        return f"<Peer {self.conn.name} {self.principal.id} role={self.role_name}>"


def _forbidden(name: str, role: str, params: Any) -> Any:
    raise Forbidden(f"a {role} may not call {name!r}", data={"method": name, "user_role": role})
