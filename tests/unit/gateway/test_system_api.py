"""``hello`` fixes a connection's role, only one its credential may take; ``ping`` and
``gateway.info`` describe the gateway."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest

from tether import __version__
from tether.config import LedgerConfig, Limits
from tether.errors import Forbidden, UnsupportedVersion
from tether.gateway.auth import Principal, local_admin
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.server import GatewayServer
from tether.gateway.system_api import SystemApi, ledger_engine
from tether.protocol.handshake import HelloParams, HelloResult
from tether.protocol.session import RpcSession
from tether.protocol.system import Empty, PingParams
from tether.transport.connection import Connection
from tether.types import Role

RUNNER = Principal("runner:box", frozenset({Role.RUNNER}), runner_id="rnr_1")
ADMIN = Principal("admin", frozenset({Role.ADMIN, Role.CLIENT}))


class FakeConn:
    name = "ws-1"

    def __init__(self) -> None:
        self.session: RpcSession[asyncio.Future[Any]] = RpcSession(
            local="gateway", peer=None, max_frame_bytes=1024
        )


class FakeConfig:
    data_dir = "/srv/tether/data"
    ledger = LedgerConfig()


class FakeServer:
    """The part of the gateway server the system methods read."""

    def __init__(self) -> None:
        self.limits = Limits(max_frame_bytes=4096, idle_timeout=42.0, max_ipc_connections=9)
        self.started_at = 1_000.0
        self.url = "http://127.0.0.1:8765"
        self.socket_path = Path("/run/tether/gateway.sock")
        self.config = FakeConfig()

    def connection_count(self, transport: str) -> int:
        return {"ws": 3, "ipc": 1}[transport]


def make_api() -> SystemApi:
    return SystemApi(cast(GatewayServer, FakeServer()))


def make_peer(principal: Principal) -> Peer:
    return Peer(cast(Connection, FakeConn()), principal, lambda n: None, transport="ws", remote="-")


def session_of(peer: Peer) -> RpcSession[asyncio.Future[Any]]:
    return cast(FakeConn, peer.conn).session


@pytest.mark.parametrize(
    ("principal", "role", "allowed"),
    [
        (RUNNER, Role.CLIENT, ["runner"]),
        (RUNNER, Role.ADMIN, ["runner"]),
        (ADMIN, Role.RUNNER, ["admin", "client"]),
        (local_admin(), Role.RUNNER, ["admin", "client"]),
    ],
)
def test_hello_refuses_a_role_the_credential_may_not_take(
    principal: Principal, role: Role, allowed: list[str]
) -> None:
    api = make_api()
    greeted: list[Peer] = []
    api.on_hello.append(greeted.append)
    peer = make_peer(principal)
    with pytest.raises(Forbidden) as info:
        api.hello(peer, HelloParams(protocol=[1], role=role, agent="x/1"))
    assert info.value.data == {"allowed": allowed}
    assert f"may connect as {', '.join(allowed)}, not as {role.value}" in info.value.message
    assert (peer.role, peer.protocol, peer.agent) == (None, 0, "")
    assert not session_of(peer).established  # still nothing but hello is accepted
    assert greeted == []


@pytest.mark.parametrize(
    ("principal", "role"), [(RUNNER, Role.RUNNER), (ADMIN, Role.ADMIN), (ADMIN, Role.CLIENT)]
)
def test_hello_fixes_an_allowed_role(principal: Principal, role: Role) -> None:
    api = make_api()
    greeted: list[tuple[str, Peer]] = []
    api.on_hello += [lambda p: greeted.append(("a", p)), lambda p: greeted.append(("b", p))]
    peer = make_peer(principal)
    result = api.hello(peer, HelloParams(protocol=[1, 99], role=role, agent="tether-cli/1"))
    assert result == HelloResult(
        protocol=1,
        role=role,
        principal=principal.id,
        server=f"tether/{__version__}",
        max_frame_bytes=4096,
        idle_timeout=42.0,
    )
    assert (peer.role, peer.protocol, peer.agent) == (role, 1, "tether-cli/1")
    assert session_of(peer).established
    assert session_of(peer).peer == role.value
    assert greeted == [("a", peer), ("b", peer)]


def test_hello_with_no_common_version_sets_nothing() -> None:
    api = make_api()
    peer = make_peer(ADMIN)
    with pytest.raises(UnsupportedVersion):
        api.hello(peer, HelloParams(protocol=[99], role=Role.ADMIN))
    assert peer.role is None
    assert not session_of(peer).established


def test_install_adds_the_three_connection_methods() -> None:
    handlers = MethodHandlers()
    api = make_api()
    api.install(handlers)
    assert set(handlers.table) == {"hello", "ping", "gateway.info"}
    assert handlers.lookup("hello") == api.hello


def test_ping_echoes_its_payload() -> None:
    pong = make_api().ping(make_peer(ADMIN), PingParams(payload="x" * 10))
    assert (pong.payload, pong.version) == ("x" * 10, __version__)


def test_info_describes_the_gateway_and_its_transports() -> None:
    api = make_api()
    peer = make_peer(ADMIN)
    api.hello(peer, HelloParams(protocol=[1], role=Role.ADMIN))
    info = api.info(peer, Empty())
    assert (info.version, info.protocol, info.pid) == (__version__, 1, os.getpid())
    assert (info.started_at, info.url, info.socket, info.data_dir) == (
        1_000.0,
        "http://127.0.0.1:8765",
        "/run/tether/gateway.sock",
        "/srv/tether/data",
    )
    assert info.uptime > 0
    assert info.ledger == "sqlite"
    assert [(t.name, t.address, t.connections, t.max_connections) for t in info.transports] == [
        ("ws", "http://127.0.0.1:8765", 3, Limits().max_ws_connections),
        ("ipc", "/run/tether/gateway.sock", 1, 9),
    ]


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        (None, "sqlite"),
        ("postgresql://tether@db/tether", "postgresql"),
        ("postgresql+asyncpg://tether:secret@db/tether", "postgresql"),
        ("sqlite+aiosqlite:///srv/ledger.db", "sqlite"),
    ],
)
def test_info_names_the_ledger_engine_without_the_url(url: str | None, engine: str) -> None:
    assert ledger_engine(url) == engine
