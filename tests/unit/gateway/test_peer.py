"""``Peer``: identity from the principal, handlers bound to the peer and cached per method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from tether.gateway.auth import Principal
from tether.gateway.peer import Peer
from tether.protocol.methods import PING, RUN_GET
from tether.transport.connection import Connection
from tether.types import Role


class FakeConn:
    name = "ws-7"


class Table:
    """A method handler table that counts look-ups."""

    def __init__(self, handlers: dict[str, Callable[..., Any]]) -> None:
        self.handlers = handlers
        self.lookups: list[str] = []

    def lookup(self, name: str) -> Callable[..., Any] | None:
        self.lookups.append(name)
        return self.handlers.get(name)


def make_peer(table: Table, principal: Principal | None = None) -> Peer:
    principal = principal or Principal("admin", frozenset({Role.ADMIN, Role.CLIENT}))
    return Peer(
        cast(Connection, FakeConn()),
        principal,
        table.lookup,
        transport="ws",
        remote="127.0.0.1:5555",
    )


def test_a_route_is_the_handler_bound_to_its_peer() -> None:
    seen: list[tuple[Peer, Any]] = []

    def ping(peer: Peer, params: Any) -> str:
        seen.append((peer, params))
        return "pong"

    peer = make_peer(Table({"ping": ping}))
    handler = peer.route(PING)
    assert handler is not None
    assert handler("params") == "pong"
    assert seen == [(peer, "params")]


def test_a_route_is_looked_up_once_then_cached() -> None:
    table = Table({"ping": lambda peer, params: None})
    peer = make_peer(table)
    first = peer.route(PING)
    second = peer.route(PING)
    assert first is not None
    assert first is second
    assert table.lookups == ["ping"]


def test_each_peer_binds_its_own_handler() -> None:
    seen: list[Peer] = []
    table = Table({"ping": lambda peer, params: seen.append(peer)})
    a, b = make_peer(table), make_peer(table)
    for peer in (a, b):
        handler = peer.route(PING)
        assert handler is not None
        handler(None)
    assert seen == [a, b]


def test_an_unknown_method_has_no_route_and_is_not_cached_as_missing() -> None:
    table = Table({})
    peer = make_peer(table)
    assert peer.route(RUN_GET) is None
    table.handlers["run.get"] = lambda peer, params: "found"
    handler = peer.route(RUN_GET)
    assert handler is not None
    assert handler(None) == "found"
    assert table.lookups == ["run.get", "run.get"]


def test_identity_comes_from_the_principal_and_the_role_from_hello() -> None:
    runner = Principal("runner:box", frozenset({Role.RUNNER}), runner_id="rnr_1")
    peer = make_peer(Table({}), runner)
    assert peer.runner_id == "rnr_1"
    assert peer.role is None
    assert peer.role_name == "none"
    assert "role=none" in repr(peer)
    peer.role = Role.RUNNER
    assert peer.role_name == "runner"
    assert repr(peer) == "<Peer ws-7 runner:box role=runner>"
    assert make_peer(Table({})).runner_id is None
