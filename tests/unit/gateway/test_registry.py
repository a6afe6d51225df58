"""The runner registry: attach, replace, detach, find, and waiting for a runner to be back."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tests.conftest import unit
from tether.gateway.auth import Principal
from tether.gateway.peer import Peer
from tether.gateway.registry import RunnerRegistry
from tether.protocol.runners import RunnerRegisterParams, ToolInfo
from tether.transport.connection import CloseCode, Connection
from tether.types import Role


class FakeConn:
    """The part of a connection the registry touches."""

    def __init__(self, name: str = "ws") -> None:
        self.name = name
        self.is_closing = False
        self.closed: list[tuple[int, str]] = []

    def close_soon(self, code: int, reason: str) -> None:
        self.is_closing = True
        self.closed.append((code, reason))


def peer(runner_id: str | None = "rnr_1") -> Peer:
    principal = Principal("runner:x", frozenset({Role.RUNNER}), runner_id=runner_id)
    return Peer(
        cast(Connection, FakeConn()),
        principal,
        lambda name: None,
        transport="ws",
        remote="127.0.0.1:1",
    )


def conn_of(p: Peer) -> FakeConn:
    return cast(FakeConn, p.conn)


def tool(name: str, schema: dict[str, Any] | None = None) -> ToolInfo:
    return ToolInfo(
        name=name,
        summary=f"the {name} tool",
        risk="read",
        params_schema=schema if schema is not None else {"type": "object"},
    )


def params(
    boot_id: str = "boot-0001",
    tools: list[ToolInfo] | None = None,
    workspaces: list[str] | None = None,
    max_concurrency: int = 16,
) -> RunnerRegisterParams:
    return RunnerRegisterParams(
        version="1.2.3",
        boot_id=boot_id,
        tools=tools if tools is not None else [tool("read_file")],
        workspaces=workspaces if workspaces is not None else ["app"],
        agents=["codex"],
        max_concurrency=max_concurrency,
        sandbox="bwrap",
    )


def test_attach_records_what_the_runner_offers() -> None:
    reg = RunnerRegistry()
    p = peer()
    live = reg.attach(p, "box", params(max_concurrency=8), max_inflight=64)
    assert reg.get("rnr_1") is live
    assert (live.runner_id, live.name, live.peer, live.boot_id) == ("rnr_1", "box", p, "boot-0001")
    assert (live.version, live.workspaces, live.agents, live.sandbox) == (
        "1.2.3",
        ["app"],
        ["codex"],
        "bwrap",
    )
    assert list(live.tools) == ["read_file"]
    assert live.max_concurrency == 8


def test_the_gateway_cap_bounds_what_a_runner_asks_for() -> None:
    reg = RunnerRegistry()
    live = reg.attach(peer(), "box", params(max_concurrency=500), max_inflight=64)
    assert live.max_concurrency == 64


def test_a_newer_connection_replaces_and_closes_the_older_one() -> None:
    reg = RunnerRegistry()
    old, new = peer(), peer()
    reg.attach(old, "box", params(), 64)
    live = reg.attach(new, "box", params(boot_id="boot-0002"), 64)
    assert reg.get("rnr_1") is live
    assert live.peer is new
    assert conn_of(old).closed == [(CloseCode.POLICY, "replaced by a newer connection")]
    assert conn_of(new).closed == []


def test_registering_again_on_the_same_connection_closes_nothing() -> None:
    reg = RunnerRegistry()
    p = peer()
    reg.attach(p, "box", params(), 64)
    live = reg.attach(p, "box", params(workspaces=["app", "lib"]), 64)
    assert conn_of(p).closed == []
    assert reg.get("rnr_1") is live
    assert live.workspaces == ["app", "lib"]


def test_detach_removes_only_the_connection_that_holds_the_runner() -> None:
    reg = RunnerRegistry()
    old, new = peer(), peer()
    reg.attach(old, "box", params(), 64)
    reg.attach(new, "box", params(), 64)
    reg.detach(old)  # the replaced connection closing later must not unregister the runner
    live = reg.get("rnr_1")
    assert live is not None
    assert live.peer is new
    reg.detach(new)
    assert reg.get("rnr_1") is None
    assert reg.find("box") is None
    reg.detach(peer(runner_id=None))  # a client connection: nothing to do
    reg.detach(new)  # twice: nothing to do


def test_find_by_id_or_by_name_follows_attach_and_detach() -> None:
    reg = RunnerRegistry()
    a, b = peer("rnr_a"), peer("rnr_b")
    live_a = reg.attach(a, "alpha", params(), 64)
    assert reg.find("alpha") is live_a  # builds the name index
    live_b = reg.attach(b, "beta", params(), 64)
    assert reg.find("beta") is live_b  # the index is rebuilt after an attach
    assert reg.find("rnr_a") is live_a
    assert reg.find("gamma") is None
    reg.detach(a)
    assert reg.find("alpha") is None  # ... and after a detach
    a2 = peer("rnr_a")
    live_a2 = reg.attach(a2, "alpha", params(), 64)
    assert reg.find("alpha") is live_a2  # the newest registration, not a stale one


def test_disconnect_closes_and_forgets_a_runner() -> None:
    reg = RunnerRegistry()
    p = peer()
    reg.attach(p, "box", params(), 64)
    assert reg.find("box") is not None
    assert reg.disconnect("rnr_1", "runner revoked")
    assert conn_of(p).closed == [(CloseCode.POLICY, "runner revoked")]
    assert reg.get("rnr_1") is None
    assert reg.find("box") is None
    assert not reg.disconnect("rnr_1", "runner revoked")  # not connected: nothing to close
    assert len(conn_of(p).closed) == 1


def test_equal_tool_descriptions_are_kept_once() -> None:
    reg = RunnerRegistry()
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    a = reg.attach(peer("rnr_a"), "a", params(tools=[tool("read_file", dict(schema))]), 64)
    b = reg.attach(peer("rnr_b"), "b", params(tools=[tool("read_file", dict(schema))]), 64)
    c = reg.attach(peer("rnr_c"), "c", params(tools=[tool("read_file", {"type": "object"})]), 64)
    assert a.tools["read_file"] is b.tools["read_file"]  # one copy for equal descriptions
    assert c.tools["read_file"] is not a.tools["read_file"]  # a different one is its own
    assert c.tools["read_file"].params_schema == {"type": "object"}


async def test_wait_back_returns_a_runner_that_is_already_connected() -> None:
    reg = RunnerRegistry()
    live = reg.attach(peer(), "box", params(), 64)
    assert await asyncio.wait_for(reg.wait_back("rnr_1", unit(5)), unit(5)) is live


async def test_wait_back_is_bounded() -> None:
    reg = RunnerRegistry()
    assert await asyncio.wait_for(reg.wait_back("rnr_1", 0.05), unit(5)) is None
    gone = peer()
    reg.attach(gone, "box", params(), 64)
    # the registration on the connection that went away does not count
    assert await asyncio.wait_for(reg.wait_back("rnr_1", 0.05, gone=gone), unit(5)) is None
    assert await reg.wait_back("rnr_1", 0) is not None


async def test_wait_back_ignores_a_connection_that_is_closing() -> None:
    reg = RunnerRegistry()
    p = peer()
    reg.attach(p, "box", params(), 64)
    conn_of(p).is_closing = True
    assert await asyncio.wait_for(reg.wait_back("rnr_1", 0.05), unit(5)) is None


async def test_wait_back_is_woken_by_the_runner_registering_again() -> None:
    reg = RunnerRegistry()
    gone = peer()
    reg.attach(gone, "box", params(), 64)
    waiters = [asyncio.create_task(reg.wait_back("rnr_1", unit(30), gone=gone)) for _ in range(3)]
    other = asyncio.create_task(reg.wait_back("rnr_2", unit(30)))
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    reg.attach(gone, "box", params(), 64)  # the same old connection again: still waiting
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    back = peer()
    live = reg.attach(back, "box", params(), 64)
    results = await asyncio.wait_for(asyncio.gather(*waiters), unit(5))
    assert results == [live, live, live]  # every waiter is woken, long before its timeout
    assert not other.done()  # another runner's waiter is not
    other.cancel()
