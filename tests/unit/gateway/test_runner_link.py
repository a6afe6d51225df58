"""The runner link over this gateway's sockets, with a hand-written connection per runner.

- Notifications from a runner are numbered: duplicates are dropped and a ``runner.ack``
  goes out every ``ACK_EVERY`` of them (and the count restarts at each acknowledgement).
- ``serve``: a runner request is answered once per ``request_key``, whoever asks again.
- ``call``: ``runner_offline`` when nothing holds the runner; after a dropped connection a
  keyed call is sent once more, marked ``resend``, to the same runner process only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
import pytest

from tests.conftest import unit
from tether.config import Limits
from tether.errors import ConnectionClosed, Forbidden, InternalError, RequestTimeout, RunnerOffline
from tether.gateway import runner_link
from tether.gateway.auth import Principal
from tether.gateway.peer import Peer
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.gateway.runner_link import ACK_EVERY, SocketRunnerLink
from tether.protocol.methods import RUNNER_ACK, TOOL_CANCEL, TOOL_EXECUTE
from tether.protocol.runners import (
    AckNote,
    RunnerRegisterParams,
    RunnerRequest,
    ToolCancelParams,
    ToolExecuteParams,
    ToolOutput,
)
from tether.transport.connection import Connection
from tether.types import Role

Answer = Callable[[str, Any], Awaitable[Any]]


class FakeConn:
    """What the link and the registry use of a connection: call, notify, close."""

    def __init__(self) -> None:
        self.is_closing = False
        self.sent: list[tuple[str, Any]] = []
        self.notes: list[tuple[str, Any]] = []
        self.answer: Answer = self.output

    @staticmethod
    async def output(method: str, params: Any) -> Any:
        return ToolOutput(call_id="c", result=msgspec.Raw(b'{"ok":true}'), duration=0.1)

    def close_soon(self, code: int, reason: str) -> None:
        self.is_closing = True

    async def call(self, method: Any, params: Any, *, timeout: float | None = None) -> Any:
        assert timeout is not None
        assert timeout > 0
        self.sent.append((method.name, params))
        if self.is_closing:
            raise ConnectionClosed("connection closed: closing")
        return await self.answer(method.name, params)

    def notify(self, method: Any, params: Any) -> None:
        self.notes.append((method.name, params))


def new_peer(runner_id: str = "rnr_1") -> Peer:
    principal = Principal("runner:box", frozenset({Role.RUNNER}), runner_id=runner_id)
    return Peer(
        cast(Connection, FakeConn()),
        principal,
        lambda name: None,
        transport="ws",
        remote="127.0.0.1:1",
    )


def conn(p: Peer | LiveRunner) -> FakeConn:
    peer = p.peer if isinstance(p, LiveRunner) else p
    return cast(FakeConn, peer.conn)


def register(
    registry: RunnerRegistry, peer: Peer, boot_id: str = "boot-aaaa", name: str = "box"
) -> LiveRunner:
    params = RunnerRegisterParams(version="1", boot_id=boot_id, tools=[], workspaces=["app"])
    return registry.attach(peer, name, params, 64)


def execute(call_id: str = "call_1") -> ToolExecuteParams:
    return ToolExecuteParams(
        call_id=call_id, tool="read_file", args={"path": "a"}, workspace="app", token="t", timeout=5
    )


def soon() -> float:
    return time.monotonic() + unit(10)


# ---- acknowledgements -------------------------------------------------------------------


def test_fresh_drops_numbers_it_already_has() -> None:
    link = SocketRunnerLink(RunnerRegistry(), Limits())
    assert link.fresh("rnr_1", "boot-a", 1)
    assert not link.fresh("rnr_1", "boot-a", 1)  # a replay after a reconnect
    assert link.fresh("rnr_1", "boot-a", 2)
    assert link.fresh("rnr_1", "boot-a", 5)  # a gap is not this side's business
    assert not link.fresh("rnr_1", "boot-a", 3)  # older than the last one
    assert link.fresh("rnr_1", "boot-b", 1)  # another process of the runner counts anew
    assert link.fresh("rnr_2", "boot-a", 1)  # and so does another runner
    assert link.acked("rnr_1", "boot-a") == 5
    assert link.acked("rnr_1", "boot-b") == 1
    assert link.acked("rnr_9", "boot-a") == 0


def test_seq_zero_is_never_sequenced() -> None:
    link = SocketRunnerLink(RunnerRegistry(), Limits())
    assert link.fresh("rnr_1", "boot-a", 0)
    assert link.fresh("rnr_1", "boot-a", 0)
    assert link.acked("rnr_1", "boot-a") == 0
    assert link.fresh("rnr_1", "boot-a", 1)


def test_a_runner_ack_goes_out_every_ack_every_notifications() -> None:
    registry = RunnerRegistry()
    live = register(registry, new_peer(), "boot-a")
    link = SocketRunnerLink(registry, Limits())
    for seq in range(1, 3 * ACK_EVERY + 10):
        assert link.fresh("rnr_1", "boot-a", seq)
    acks = [(m, p.acked) for m, p in conn(live).notes]
    assert acks == [(RUNNER_ACK.name, n * ACK_EVERY) for n in (1, 2, 3)]
    assert all(isinstance(p, AckNote) for _, p in conn(live).notes)


def test_an_acknowledgement_in_an_answer_restarts_the_count() -> None:
    registry = RunnerRegistry()
    live = register(registry, new_peer(), "boot-a")
    link = SocketRunnerLink(registry, Limits())
    for seq in range(1, 41):
        link.fresh("rnr_1", "boot-a", seq)
    assert link.acked("rnr_1", "boot-a") == 40  # told in a heartbeat answer
    for seq in range(41, 40 + ACK_EVERY):
        link.fresh("rnr_1", "boot-a", seq)
    assert conn(live).notes == []  # 40 + 63: not yet
    link.fresh("rnr_1", "boot-a", 40 + ACK_EVERY)
    assert [p.acked for _, p in conn(live).notes] == [40 + ACK_EVERY]
    link.fresh("rnr_1", "boot-a", 40 + ACK_EVERY)  # a duplicate is not acknowledged again
    assert len(conn(live).notes) == 1


def test_no_ack_is_sent_to_a_runner_that_is_not_connected() -> None:
    registry = RunnerRegistry()
    link = SocketRunnerLink(registry, Limits())
    for seq in range(1, ACK_EVERY + 1):
        assert link.fresh("rnr_1", "boot-a", seq)  # still accepted
    assert link.acked("rnr_1", "boot-a") == ACK_EVERY


def test_registering_forgets_only_the_earlier_processes_of_that_runner() -> None:
    registry = RunnerRegistry()
    link = SocketRunnerLink(registry, Limits())
    link.fresh("rnr_1", "boot-old", 7)
    link.fresh("rnr_1", "boot-new", 3)
    link.fresh("rnr_2", "boot-old", 9)
    link.registered(register(registry, new_peer("rnr_1"), "boot-new"))
    assert link.acked("rnr_1", "boot-old") == 0
    assert link.acked("rnr_1", "boot-new") == 3  # the same process reconnecting keeps its count
    assert link.acked("rnr_2", "boot-old") == 9
    assert not link.fresh("rnr_1", "boot-new", 3)


# ---- runner -> gateway requests ---------------------------------------------------------


class AskParams(RunnerRequest):
    text: str


class Handler:
    """A request handler that counts its runs and can be held until released."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.runs: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def __call__(self, runner_id: str, params: AskParams) -> str:
        self.runs.append((runner_id, params.request_key))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return f"answer {len(self.runs)} to {params.text}"


def ask(key: str = "request-0001", text: str = "may I?") -> AskParams:
    return AskParams(request_key=key, text=text)


async def test_a_repeated_request_key_is_answered_once() -> None:
    registry = RunnerRegistry()
    peer = new_peer()
    register(registry, peer)
    handler = Handler()
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    first = await handle(peer, ask())
    again = await handle(peer, ask())
    assert first == again == "answer 1 to may I?"
    assert handler.runs == [("rnr_1", "request-0001")]
    assert await handle(peer, ask("request-0002")) == "answer 2 to may I?"


async def test_concurrent_duplicates_attach_to_the_first() -> None:
    registry = RunnerRegistry()
    peer = new_peer()
    register(registry, peer)
    handler = Handler()
    handler.gate.clear()
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    waiting: list[asyncio.Future[str]] = [
        asyncio.ensure_future(handle(peer, ask())) for _ in range(3)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(handler.runs) == 1
    assert not any(w.done() for w in waiting)
    handler.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*waiting), unit(5))
    assert answers == ["answer 1 to may I?"] * 3
    assert len(handler.runs) == 1


async def test_a_request_outlives_the_connection_that_asked_and_is_answered_after_it() -> None:
    registry = RunnerRegistry()
    first = new_peer()
    register(registry, first)
    handler = Handler()
    handler.gate.clear()
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    asking: asyncio.Future[str] = asyncio.ensure_future(handle(first, ask()))
    for _ in range(3):
        await asyncio.sleep(0)
    asking.cancel()  # the connection dropped: its request handler is cancelled
    with pytest.raises(asyncio.CancelledError):
        await asking
    back = new_peer()
    register(registry, back)  # the runner reconnects and asks again with the same key
    again: asyncio.Future[str] = asyncio.ensure_future(handle(back, ask()))
    handler.gate.set()
    assert await asyncio.wait_for(again, unit(5)) == "answer 1 to may I?"
    assert len(handler.runs) == 1  # the handler kept running and ran once


async def test_a_failed_request_fails_the_same_way_when_asked_again() -> None:
    registry = RunnerRegistry()
    peer = new_peer()
    register(registry, peer)
    handler = Handler(fail=Forbidden("no"))
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    for _ in range(2):
        with pytest.raises(Forbidden, match="no"):
            await handle(peer, ask())
    assert len(handler.runs) == 1


async def test_request_keys_are_per_runner() -> None:
    registry = RunnerRegistry()
    a, b = new_peer("rnr_a"), new_peer("rnr_b")
    register(registry, a, name="a")
    register(registry, b, name="b")
    handler = Handler()
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    await handle(a, ask())
    await handle(b, ask())  # the same key from another runner is another request
    assert handler.runs == [("rnr_a", "request-0001"), ("rnr_b", "request-0001")]


async def test_only_the_registered_connection_may_send_requests() -> None:
    registry = RunnerRegistry()
    handler = Handler()
    handle = SocketRunnerLink(registry, Limits()).serve(handler)
    stranger = new_peer()
    with pytest.raises(RunnerOffline):
        await handle(stranger, ask())  # not registered at all
    register(registry, new_peer())
    with pytest.raises(RunnerOffline):
        await handle(stranger, ask())  # the runner is registered on another connection
    assert handler.runs == []


async def test_the_answers_stay_bounded_while_an_old_request_is_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_link, "_MAX_ANSWERS", 4)
    registry = RunnerRegistry()
    peer = new_peer()
    register(registry, peer)
    slow, quick = Handler(), Handler()
    slow.gate.clear()

    async def route(runner_id: str, params: AskParams) -> str:
        return await (slow if params.text == "slow" else quick)(runner_id, params)

    link = SocketRunnerLink(registry, Limits())
    handle = link.serve(route)
    pending: asyncio.Future[str] = asyncio.ensure_future(handle(peer, ask("request-slow", "slow")))
    await asyncio.sleep(0)  # the slow request is the oldest
    for i in range(20):
        await handle(peer, ask(f"request-{i:04}"))
    try:
        assert len(link._answers) <= 5
    finally:
        slow.gate.set()
        await asyncio.wait_for(pending, unit(5))


# ---- gateway -> runner calls ------------------------------------------------------------


async def test_a_call_goes_to_the_connection_holding_the_runner() -> None:
    registry = RunnerRegistry()
    live = register(registry, new_peer())
    link = SocketRunnerLink(registry, Limits())
    result = await link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1")
    assert isinstance(result, ToolOutput)
    assert conn(live).sent == [(TOOL_EXECUTE.name, execute())]


async def test_a_call_to_a_runner_nobody_holds_is_runner_offline() -> None:
    link = SocketRunnerLink(RunnerRegistry(), Limits())
    with pytest.raises(RunnerOffline) as info:
        await link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1")
    assert info.value.data == {"runner_id": "rnr_1"}


async def test_a_call_key_needs_params_that_can_be_marked_resend() -> None:
    registry = RunnerRegistry()
    live = register(registry, new_peer())
    link = SocketRunnerLink(registry, Limits())
    with pytest.raises(InternalError, match="cannot be re-sent"):
        await link.call(
            "rnr_1", TOOL_CANCEL, ToolCancelParams(call_id="c"), deadline=soon(), call_key="k"
        )
    assert conn(live).sent == []  # refused before anything is sent
    await link.call("rnr_1", TOOL_CANCEL, ToolCancelParams(call_id="c"), deadline=soon())
    assert len(conn(live).sent) == 1  # without a key it is fine


async def test_a_peer_error_or_timeout_is_the_callers_not_a_resend() -> None:
    registry = RunnerRegistry()
    live = register(registry, new_peer())
    link = SocketRunnerLink(registry, Limits())

    async def slow(method: str, params: Any) -> Any:
        raise RequestTimeout("no answer")

    conn(live).answer = slow
    with pytest.raises(RequestTimeout):
        await link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1")
    assert len(conn(live).sent) == 1


def drops_and_comes_back(
    registry: RunnerRegistry, old: LiveRunner, back: Peer | None, boot_id: str
) -> Answer:
    """An answer that drops the connection; the runner then registers on ``back``."""

    async def answer(method: str, params: Any) -> Any:
        conn(old).is_closing = True
        if back is not None:
            asyncio.get_running_loop().call_soon(register, registry, back, boot_id)
        raise ConnectionClosed("connection lost")

    return answer


async def test_a_keyed_call_is_sent_again_when_the_same_process_comes_back() -> None:
    registry = RunnerRegistry()
    old = register(registry, new_peer(), "boot-aaaa")
    back = new_peer()
    conn(old).answer = drops_and_comes_back(registry, old, back, "boot-aaaa")
    link = SocketRunnerLink(registry, Limits(runner_grace=unit(30)))
    result = await asyncio.wait_for(
        link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1"),
        unit(5),
    )
    assert isinstance(result, ToolOutput)
    assert [p.resend for _, p in conn(old).sent] == [False]
    assert [p.resend for _, p in conn(back).sent] == [True]  # once, marked as a re-send
    assert conn(back).sent[0][1] == msgspec.structs.replace(execute(), resend=True)


async def test_a_keyed_call_is_not_sent_to_a_restarted_runner() -> None:
    registry = RunnerRegistry()
    old = register(registry, new_peer(), "boot-aaaa")
    back = new_peer()
    conn(old).answer = drops_and_comes_back(registry, old, back, "boot-bbbb")
    link = SocketRunnerLink(registry, Limits(runner_grace=unit(30)))
    with pytest.raises(RunnerOffline, match="restarted") as info:
        await asyncio.wait_for(
            link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1"),
            unit(5),
        )
    assert info.value.data == {"runner_id": "rnr_1", "call_key": "call_1"}
    assert conn(back).sent == []  # its outcome is unknown: never run twice


async def test_a_call_without_a_key_is_not_sent_again() -> None:
    registry = RunnerRegistry()
    old = register(registry, new_peer(), "boot-aaaa")
    back = new_peer()
    conn(old).answer = drops_and_comes_back(registry, old, back, "boot-aaaa")
    link = SocketRunnerLink(registry, Limits(runner_grace=unit(30)))
    with pytest.raises(RunnerOffline, match="went away"):
        await asyncio.wait_for(
            link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon()), unit(5)
        )
    await asyncio.sleep(0)
    assert conn(back).sent == []


async def test_a_runner_that_does_not_come_back_is_offline_after_the_grace() -> None:
    registry = RunnerRegistry()
    old = register(registry, new_peer(), "boot-aaaa")
    conn(old).answer = drops_and_comes_back(registry, old, None, "boot-aaaa")
    link = SocketRunnerLink(registry, Limits(runner_grace=0.05))
    with pytest.raises(RunnerOffline, match="went away"):
        await asyncio.wait_for(
            link.call("rnr_1", TOOL_EXECUTE, execute(), deadline=soon(), call_key="call_1"),
            unit(5),
        )


async def test_the_wait_for_a_runner_ends_with_the_calls_deadline() -> None:
    registry = RunnerRegistry()
    old = register(registry, new_peer(), "boot-aaaa")
    conn(old).answer = drops_and_comes_back(registry, old, None, "boot-aaaa")
    link = SocketRunnerLink(registry, Limits(runner_grace=unit(60)))
    with pytest.raises(RunnerOffline):
        await asyncio.wait_for(
            link.call(
                "rnr_1",
                TOOL_EXECUTE,
                execute(),
                deadline=time.monotonic() + 0.05,
                call_key="call_1",
            ),
            unit(5),  # far less than the grace: the deadline bounds the wait
        )


def test_notify_reaches_a_connected_runner_only() -> None:
    registry = RunnerRegistry()
    link = SocketRunnerLink(registry, Limits())
    assert not link.notify("rnr_1", RUNNER_ACK, AckNote(acked=1))
    live = register(registry, new_peer())
    assert link.notify("rnr_1", RUNNER_ACK, AckNote(acked=2))
    assert conn(live).notes == [(RUNNER_ACK.name, AckNote(acked=2))]
    conn(live).is_closing = True
    assert not link.notify("rnr_1", RUNNER_ACK, AckNote(acked=3))
    assert len(conn(live).notes) == 1
