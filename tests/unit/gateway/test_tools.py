"""``ToolGateway``: one tool call to one runner, recorded before it is sent, finished after.

A real ledger, registry and capability issuer; the runner link is a hand-written fake that
answers (or holds, or fails) each ``tool.execute`` as the test says.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import unit
from tether.config import Limits
from tether.errors import (
    InvalidParams,
    NotFound,
    Overloaded,
    RequestTimeout,
    RunnerOffline,
    ToolFailed,
    ToolTimeout,
)
from tether.gateway.auth import Principal
from tether.gateway.peer import Peer
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.gateway.runner_link import RunnerLink
from tether.gateway.tools import CallOutcome, ToolGateway
from tether.ledger import Ledger
from tether.ledger.tool_calls import ToolCallRecord
from tether.protocol.methods import TOOL_CANCEL, TOOL_EXECUTE
from tether.protocol.runners import (
    RunnerRegisterParams,
    ToolCancelParams,
    ToolExecuteParams,
    ToolInfo,
    ToolOutput,
)
from tether.security.capability import CapabilityIssuer, CapabilityVerifier
from tether.security.credentials import hash_secret
from tether.transport.connection import Connection
from tether.types import Role

Execute = Callable[[str, ToolExecuteParams], Awaitable[ToolOutput]]


async def answer(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
    return ToolOutput(call_id=params.call_id, result=msgspec.Raw(b'{"lines":3}'), duration=0.25)


@dataclass
class Sent:
    runner_id: str
    method: str
    params: Any
    call_key: str | None
    deadline: float


@dataclass
class FakeLink:
    """Records every call; ``tool.execute`` is answered by ``execute``, ``tool.cancel`` at once."""

    execute: Execute = answer
    sent: list[Sent] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(
        self,
        runner_id: str,
        method: Any,
        params: Any,
        *,
        deadline: float,
        call_key: str | None = None,
    ) -> Any:
        self.sent.append(Sent(runner_id, method.name, params, call_key, deadline))
        if method is TOOL_CANCEL:
            self.cancelled.set()
            return None
        assert method is TOOL_EXECUTE
        return await self.execute(runner_id, params)

    def notify(self, runner_id: str, method: Any, params: Any) -> bool:
        return True

    def executes(self) -> list[Sent]:
        return [s for s in self.sent if s.method == TOOL_EXECUTE.name]

    def cancels(self) -> list[tuple[str, str]]:
        return [(s.runner_id, s.params.call_id) for s in self.sent if s.method == TOOL_CANCEL.name]


class Held:
    """A ``tool.execute`` answer that waits until the test releases it."""

    def __init__(self) -> None:
        self.arrived: list[ToolExecuteParams] = []
        self.release = asyncio.Event()

    async def __call__(self, runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        self.arrived.append(params)
        await self.release.wait()
        return await answer(runner_id, params)

    async def until(self, n: int) -> None:
        async with asyncio.timeout(unit(5)):
            while len(self.arrived) < n:
                await asyncio.sleep(0.001)


class FakeConn:
    is_closing = False

    def close_soon(self, code: int, reason: str) -> None:
        self.is_closing = True


@dataclass
class Rig:
    ledger: Ledger
    registry: RunnerRegistry
    link: FakeLink
    issuer: CapabilityIssuer
    tools: ToolGateway

    def connect(
        self,
        runner_id: str = "rnr_1",
        name: str = "box",
        *,
        workspaces: list[str] | None = None,
        max_concurrency: int = 16,
        tools: tuple[str, ...] = ("read_file", "shell"),
    ) -> LiveRunner:
        principal = Principal(f"runner:{name}", frozenset({Role.RUNNER}), runner_id=runner_id)
        peer = Peer(
            cast(Connection, FakeConn()), principal, lambda n: None, transport="ws", remote="-"
        )
        params = RunnerRegisterParams(
            version="1",
            boot_id=f"boot-{runner_id}",
            tools=[ToolInfo(name=t, summary=t, risk="read", params_schema={}) for t in tools],
            workspaces=workspaces if workspaces is not None else ["app"],
            max_concurrency=max_concurrency,
        )
        return self.registry.attach(peer, name, params, self.tools.limits.max_runner_inflight)

    async def call(
        self, runner_id: str = "rnr_1", tool: str = "read_file", **kw: Any
    ) -> CallOutcome:
        args = kw.pop("args", {"path": "README.md"})
        return await self.tools.execute(
            runner_id=runner_id,
            tool=tool,
            args=args,
            workspace=kw.pop("workspace", "app"),
            timeout=kw.pop("timeout", 30.0),
            **kw,
        )


def make_rig(ledger: Ledger, limits: Limits | None = None) -> Rig:
    registry = RunnerRegistry()
    link = FakeLink()
    issuer = CapabilityIssuer(Ed25519PrivateKey.generate())
    tools = ToolGateway(ledger, registry, cast(RunnerLink, link), issuer, limits or Limits())
    return Rig(ledger, registry, link, issuer, tools)


@pytest.fixture
async def rig(ledger: Ledger) -> Rig:
    return make_rig(ledger)


async def record(rig: Rig, call_id: str) -> ToolCallRecord:
    return await rig.ledger.tool_calls.get(call_id)


# ---- which runner, which workspace ----------------------------------------------------


async def test_live_finds_a_connected_runner_by_name_or_id(rig: Rig) -> None:
    live = rig.connect("rnr_1", "box")
    assert await rig.tools.live("box") is live
    assert await rig.tools.live("rnr_1") is live


async def test_live_tells_an_offline_runner_from_an_unknown_one(rig: Rig) -> None:
    await rig.ledger.runners.add("box", code_hash=hash_secret("c"), expires_at=time.time() + 60)
    with pytest.raises(RunnerOffline, match=r"box is not connected .*`tether runner`") as info:
        await rig.tools.live("box")
    assert info.value.data == {"runner": "box"}
    with pytest.raises(NotFound):
        await rig.tools.live("nobody")


async def test_target_uses_the_workspace_given_or_the_only_one(rig: Rig) -> None:
    one = rig.connect("rnr_1", "one", workspaces=["app"])
    assert await rig.tools.target("one") == (one, "app")
    assert await rig.tools.target("one", "lib") == (one, "lib")  # checked when it is called
    two = rig.connect("rnr_2", "two", workspaces=["app", "lib"])
    assert await rig.tools.target("two", "lib") == (two, "lib")
    with pytest.raises(InvalidParams, match="has: app, lib") as info:
        await rig.tools.target("two")
    assert info.value.data == {"field": "params.workspace"}
    rig.connect("rnr_3", "none", workspaces=[])
    with pytest.raises(InvalidParams, match="has: none"):
        await rig.tools.target("none")


# ---- refused before anything is recorded or sent ------------------------------------------


async def test_a_call_that_cannot_run_is_refused_before_it_is_recorded(rig: Rig) -> None:
    with pytest.raises(RunnerOffline):
        await rig.call("rnr_1", call_id="call_offline")
    rig.connect("rnr_1", tools=("read_file",), workspaces=["app"])
    with pytest.raises(NotFound, match="does not offer the tool 'shell'"):
        await rig.call("rnr_1", "shell", call_id="call_no_tool")
    with pytest.raises(InvalidParams, match="no workspace 'lib'") as info:
        await rig.call("rnr_1", workspace="lib", call_id="call_no_ws")
    assert info.value.data == {"field": "params.workspace"}
    for call_id in ("call_offline", "call_no_tool", "call_no_ws"):
        with pytest.raises(NotFound):
            await record(rig, call_id)
    assert rig.link.sent == []
    assert not rig.tools.inflight


# ---- recorded, sent, finished -----------------------------------------------------------


async def test_a_call_is_recorded_before_it_is_sent_and_finished_after(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.connect("rnr_1")
    journal: list[str] = []
    create, finish = rig.ledger.tool_calls.create, rig.ledger.tool_calls.finish

    async def created(**kw: Any) -> None:
        await create(**kw)
        journal.append("recorded")

    async def finished(call_id: str, **kw: Any) -> None:
        await finish(call_id, **kw)
        journal.append("finished")

    monkeypatch.setattr(rig.ledger.tool_calls, "create", created)
    monkeypatch.setattr(rig.ledger.tool_calls, "finish", finished)
    at_send: list[ToolCallRecord] = []

    async def runner(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        journal.append("sent")
        at_send.append(await record(rig, params.call_id))  # what the ledger holds
        return await answer(runner_id, params)

    rig.link.execute = runner
    before_call = time.monotonic()
    outcome = await rig.call(
        "rnr_1",
        call_id="call_1",
        requested_by="alice",
        decided_by="bob",
        rule="allow_once by bob (request abcd)",
        timeout=20.0,
    )
    assert outcome == CallOutcome("call_1", "rnr_1", msgspec.Raw(b'{"lines":3}'), 0.25)
    assert journal == ["recorded", "sent", "finished"]  # committed before it was sent
    (before,) = at_send
    assert (before.state, before.finished_at, before.result) == ("dispatched", None, None)
    assert (before.runner_id, before.tool, before.workspace) == ("rnr_1", "read_file", "app")
    assert (before.decision, before.requested_by, before.run_id) == ("allow", "alice", None)
    assert (before.decided_by, before.rule) == ("bob", "allow_once by bob (request abcd)")
    assert json.loads(before.args) == {"path": "README.md"}
    after = await record(rig, "call_1")
    assert (after.state, after.error_code) == ("succeeded", None)
    assert after.result is not None
    assert json.loads(after.result) == {"lines": 3}
    assert after.finished_at is not None
    # sent once, keyed by the call id (so the link may re-send it), under a token bound to it
    (sent,) = rig.link.executes()
    assert (sent.runner_id, sent.call_key) == ("rnr_1", "call_1")
    assert sent.deadline >= before_call + 20.0  # the call's own timeout, and some slack
    params: ToolExecuteParams = sent.params
    assert (params.call_id, params.tool, params.workspace, params.timeout) == (
        "call_1",
        "read_file",
        "app",
        20.0,
    )
    verifier = CapabilityVerifier(rig.issuer.public_pem, "rnr_1")
    cap = verifier.verify(
        params.token, call_id="call_1", tool="read_file", args=params.args, workspace="app"
    )
    assert cap.token_id == before.token_id
    assert not rig.tools.active
    assert not rig.tools.inflight


async def test_secrets_are_redacted_in_the_ledger_but_not_for_the_runner_or_the_caller(
    rig: Rig,
) -> None:
    rig.connect("rnr_1")
    secret = "hunter2-" + "q" * 24

    async def leaky(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        result = msgspec.json.encode({"password": secret})
        return ToolOutput(call_id=params.call_id, result=msgspec.Raw(result), duration=0.1)

    rig.link.execute = leaky
    outcome = await rig.call("rnr_1", "shell", args={"password": secret}, call_id="call_s")
    assert rig.link.executes()[0].params.args == {"password": secret}  # the runner needs it
    assert secret in bytes(outcome.result).decode()  # and so does the agent
    stored = await record(rig, "call_s")
    assert secret not in stored.args
    assert stored.result is not None
    assert secret not in stored.result
    assert json.loads(stored.result) == {"password": "[redacted]"}  # still JSON


async def test_a_failed_call_is_finished_as_failed_and_raised(rig: Rig) -> None:
    rig.connect("rnr_1")

    async def fails(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        raise ToolFailed("no such file: README.md")

    rig.link.execute = fails
    with pytest.raises(ToolFailed, match="no such file"):
        await rig.call("rnr_1", call_id="call_f")
    stored = await record(rig, "call_f")
    assert (stored.state, stored.error_code, stored.error) == (
        "failed",
        "tool_failed",
        "no such file: README.md",
    )
    assert stored.finished_at is not None
    assert not rig.tools.inflight
    assert not rig.tools.active


async def test_a_timeout_is_tool_timeout_and_the_call_is_cancelled_on_the_runner(
    rig: Rig,
) -> None:
    rig.connect("rnr_1")

    async def never_answers(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        raise RequestTimeout("no answer before the deadline")

    rig.link.execute = never_answers
    with pytest.raises(ToolTimeout, match="read_file did not finish in time") as info:
        await rig.call("rnr_1", call_id="call_t")
    assert info.value.data == {"call_id": "call_t"}
    assert isinstance(info.value.__cause__, RequestTimeout)
    stored = await record(rig, "call_t")
    assert (stored.state, stored.error_code) == ("timeout", "tool_timeout")
    await asyncio.wait_for(rig.link.cancelled.wait(), unit(5))
    assert rig.link.cancels() == [("rnr_1", "call_t")]
    assert rig.link.sent[-1].params == ToolCancelParams(call_id="call_t")


async def test_a_call_whose_caller_is_cancelled_is_not_left_dispatched(rig: Rig) -> None:
    rig.connect("rnr_1")
    held = Held()
    rig.link.execute = held
    calling = asyncio.create_task(rig.call("rnr_1", call_id="call_c"))
    await held.until(1)
    calling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calling
    assert not rig.tools.inflight  # the slot is given back either way
    stored = await record(rig, "call_c")
    assert stored.state != "dispatched"
    assert stored.finished_at is not None


# ---- in flight ----------------------------------------------------------------------------


async def test_calls_in_flight_are_counted_per_runner_and_capped(rig: Rig) -> None:
    rig.connect("rnr_1", max_concurrency=2)
    rig.connect("rnr_2", "other", max_concurrency=2)
    held = Held()
    rig.link.execute = held
    first = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    second = asyncio.create_task(rig.call("rnr_1", call_id="call_2"))
    await held.until(2)
    assert rig.tools.inflight["rnr_1"] == 2
    assert set(rig.tools.active) == {"call_1", "call_2"}
    with pytest.raises(Overloaded, match="already runs 2 calls") as info:
        await asyncio.wait_for(rig.call("rnr_1", call_id="call_3"), unit(5))
    assert info.value.data == {"runner_id": "rnr_1"}
    with pytest.raises(NotFound):
        await record(rig, "call_3")  # refused before it was recorded
    other = asyncio.create_task(rig.call("rnr_2", call_id="call_4"))  # another runner is free
    await held.until(3)
    assert rig.tools.inflight["rnr_2"] == 1
    held.release.set()
    await asyncio.wait_for(asyncio.gather(first, second, other), unit(5))
    assert not rig.tools.inflight  # every slot given back, no zero entries left
    await rig.call("rnr_1", call_id="call_5")


async def test_the_gateway_cap_applies_when_the_runner_offers_more(ledger: Ledger) -> None:
    rig = make_rig(ledger, Limits(max_runner_inflight=1))
    rig.connect("rnr_1", max_concurrency=50)
    held = Held()
    rig.link.execute = held
    first = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    await held.until(1)
    with pytest.raises(Overloaded):
        await asyncio.wait_for(rig.call("rnr_1", call_id="call_2"), unit(5))
    held.release.set()
    await asyncio.wait_for(first, unit(5))


async def test_a_failed_call_gives_its_slot_back(rig: Rig) -> None:
    rig.connect("rnr_1", max_concurrency=1)

    async def fails(runner_id: str, params: ToolExecuteParams) -> ToolOutput:
        raise ToolFailed("nope")

    rig.link.execute = fails
    for n in range(3):
        with pytest.raises(ToolFailed):
            await rig.call("rnr_1", call_id=f"call_{n}")
    assert not rig.tools.inflight


async def test_a_reconnect_does_not_reset_the_count(rig: Rig) -> None:
    rig.connect("rnr_1", max_concurrency=1)
    held = Held()
    rig.link.execute = held
    first = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    await held.until(1)
    rig.connect("rnr_1", max_concurrency=1)  # the same runner on a new connection
    with pytest.raises(Overloaded):
        await asyncio.wait_for(rig.call("rnr_1", call_id="call_2"), unit(5))
    held.release.set()
    await asyncio.wait_for(first, unit(5))


# ---- progress and cancel ------------------------------------------------------------------


async def test_progress_reaches_only_the_call_of_the_runner_that_runs_it(rig: Rig) -> None:
    rig.connect("rnr_1")
    rig.connect("rnr_2", "other")
    held = Held()
    rig.link.execute = held
    heard: list[tuple[str, str]] = []
    calling = asyncio.create_task(
        rig.call("rnr_1", call_id="call_1", progress=lambda s, t: heard.append((s, t)))
    )
    await held.until(1)
    rig.tools.progress("rnr_1", "call_1", "stdout", "line 1\n")
    rig.tools.progress("rnr_2", "call_1", "stdout", "forged by another runner\n")
    rig.tools.progress(None, "call_1", "stdout", "from no runner\n")
    rig.tools.progress("rnr_1", "call_9", "stdout", "another call\n")
    rig.tools.progress("rnr_1", "call_1", "stderr", "warning\n")
    held.release.set()
    await asyncio.wait_for(calling, unit(5))
    rig.tools.progress("rnr_1", "call_1", "stdout", "after the end\n")
    assert heard == [("stdout", "line 1\n"), ("stderr", "warning\n")]


async def test_progress_without_a_listener_is_ignored(rig: Rig) -> None:
    rig.connect("rnr_1")
    held = Held()
    rig.link.execute = held
    calling = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    await held.until(1)
    rig.tools.progress("rnr_1", "call_1", "stdout", "nobody listens\n")
    held.release.set()
    await asyncio.wait_for(calling, unit(5))


async def test_cancel_asks_the_runner_of_an_active_call(rig: Rig) -> None:
    rig.connect("rnr_1")
    held = Held()
    rig.link.execute = held
    calling = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    await held.until(1)
    assert not await rig.tools.cancel("call_unknown")
    assert await rig.tools.cancel("call_1")
    await asyncio.wait_for(rig.link.cancelled.wait(), unit(5))
    assert rig.link.cancels() == [("rnr_1", "call_1")]
    held.release.set()
    await asyncio.wait_for(calling, unit(5))
    assert not await rig.tools.cancel("call_1")  # finished: nothing to cancel


async def test_cancel_of_a_call_whose_runner_is_gone_is_false(rig: Rig) -> None:
    live = rig.connect("rnr_1")
    held = Held()
    rig.link.execute = held
    calling = asyncio.create_task(rig.call("rnr_1", call_id="call_1"))
    await held.until(1)
    rig.registry.detach(live.peer)
    assert not await rig.tools.cancel("call_1")
    assert rig.link.cancels() == []
    held.release.set()
    await asyncio.wait_for(calling, unit(5))
