"""The method handler table: which function handles each method on the gateway side.

Handlers take the calling :class:`~tether.gateway.peer.Peer` and the typed params and
return the result (plain functions run inline on the reader; coroutine functions run
as their own task). The method table in ``tether.protocol.methods`` decides who may
call; this only maps names to code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tether.gateway.peer import Peer
from tether.protocol.methods import Method

__all__ = ["MethodHandlers"]

P = TypeVar("P")
R = TypeVar("R")


class MethodHandlers:
    """Method name -> handler."""

    def __init__(self) -> None:
        self.table: dict[str, Callable[[Peer, Any], Any]] = {}

    def add(self, method: Method[Any, R], fn: Callable[[Peer, Any], R | Awaitable[R]]) -> None:
        if method.name in self.table:
            raise ValueError(f"a handler for {method.name!r} is already registered")
        self.table[method.name] = fn

    def lookup(self, name: str) -> Callable[[Peer, Any], Any] | None:
        """The handler of ``name``, for a :class:`Peer` to bind."""
        return self.table.get(name)
