"""The runner's route table: each method it accepts from the gateway, and its handler.

Anything not in the table is refused (``method_not_found``), and a method is accepted
only if the method table says the gateway sends it. Requests can only come from the
gateway: the runner dials out and accepts no connection of its own.
"""

from __future__ import annotations

from typing import Any

from tether.protocol.methods import GATEWAY, Method
from tether.transport.connection import Handler

__all__ = ["RouteTable"]


class RouteTable:
    """Method -> handler, for the methods the gateway may send a runner."""

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}

    def add(self, method: Method[Any, Any], handler: Handler) -> None:
        if GATEWAY not in method.callers:
            raise ValueError(f"{method.name} is not sent by the gateway; a runner cannot accept it")
        if method.name in self._routes:
            raise ValueError(f"{method.name} is routed twice")
        self._routes[method.name] = handler

    def route(self, method: Method[Any, Any]) -> Handler | None:
        return self._routes.get(method.name)

    @property
    def methods(self) -> list[str]:
        return sorted(self._routes)
