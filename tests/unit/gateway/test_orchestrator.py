"""The orchestrator's requests: ``submit`` (new sessions, agents, fixtures, steering) and
``cancel``, on a real ledger with a tiny agent backend the test controls."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import unit
from tether.agents.contract import Capabilities, Outcome, RunContext
from tether.config import Limits, PolicyConfig, RunsConfig
from tether.errors import Forbidden, InvalidParams, NotFound
from tether.gateway.call_gate import CallGate
from tether.gateway.call_policy import CallPolicy
from tether.gateway.fanout import Fanout
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.orchestrator import Orchestrator
from tether.gateway.registry import RunnerRegistry
from tether.gateway.requests import RequestBroker
from tether.gateway.run_log import RunLog
from tether.gateway.runner_link import SocketRunnerLink
from tether.gateway.supervisor import Supervisor
from tether.gateway.tools import ToolGateway
from tether.ledger import Event, Ledger, Run
from tether.protocol.events import (
    AgentStatus,
    AgentUsage,
    ApprovalResolved,
    RunEvent,
    RunSucceeded,
    ToolCallDecided,
    ToolCallOutput,
)
from tether.security.capability import CapabilityIssuer
from tether.security.credentials import hash_secret
from tether.types import RunState

Make = Callable[..., Orchestrator]


class Agent:
    """A backend that holds its run until released, then says what steering it read."""

    def __init__(self, name: str, *, steering: bool = True, fixture: bool = False) -> None:
        self.name = name
        self.capabilities = Capabilities(steering=steering, fixture=fixture)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.inputs: list[str] = []
        self.steering: list[str] = []

    async def run(self, ctx: RunContext) -> Outcome:
        self.inputs.append(ctx.input)
        self.started.set()
        waits = [asyncio.ensure_future(e.wait()) for e in (self.release, ctx.cancelled)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if ctx.cancelled.is_set():
            return Outcome(state="failed", reason="cancelled")
        self.steering += ctx.take_steering()
        return Outcome(state="succeeded", output=" | ".join(self.steering) or "done")


class Sessions:
    """A fan-out subscriber of every session it is told about."""

    def __init__(self, fanout: Fanout, session_id: str) -> None:
        self.run_id: str | None = None
        self.session_id: str | None = session_id
        self.events: list[Event] = []
        fanout.add(self)

    def offer(self, session_id: str, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
async def make(ledger: Ledger) -> AsyncIterator[Make]:
    made: list[Orchestrator] = []

    def build(agents: list[Agent] | None = None, **config: Any) -> Orchestrator:
        agents = agents if agents is not None else [Agent("plain")]
        config.setdefault("default_agent", agents[0].name if agents else "plain")
        config.setdefault("poll_interval", 0.05)
        registry = RunnerRegistry()
        tools = ToolGateway(
            ledger,
            registry,
            SocketRunnerLink(registry, Limits()),
            CapabilityIssuer(Ed25519PrivateKey.generate()),
            Limits(),
        )
        policy = PolicyConfig()
        gate = CallGate(CallPolicy(ledger, policy), RequestBroker(ledger, policy), tools)
        orch = Orchestrator(
            RunLog(ledger, Fanout()),
            {a.name: a for a in agents},
            gate,
            RunsConfig(**config),
            GatewayMetrics(),
            Supervisor(),
            node="test-node",
        )
        made.append(orch)
        return orch

    yield build
    for orch in made:
        await asyncio.wait_for(orch.aclose(), unit(10))
        await orch.supervisor.aclose()
        assert orch.supervisor.failure is None, orch.supervisor.failure


async def submit(orch: Orchestrator, text: str = "hi", **kw: Any) -> tuple[Run, str]:
    kw.setdefault("session_id", None)
    kw.setdefault("agent", None)
    kw.setdefault("created_by", "alice")
    kw.setdefault("steer", False)
    kw.setdefault("role", "client")
    return await orch.submit(text=text, **kw)


async def state(ledger: Ledger, run_id: str, states: set[RunState]) -> Run:
    async with asyncio.timeout(unit(10)):
        while True:
            run = await ledger.runs.get(run_id)
            if run.state in states:
                return run
            await asyncio.sleep(0.01)


async def kinds(ledger: Ledger, run_id: str) -> list[str]:
    return [e.kind for e in await ledger.events.read(run_id)]


def metric(orch: Orchestrator, name: str, **labels: str) -> float:
    return orch.metrics.registry.get_sample_value(name, labels) or 0.0


# ---- submit: sessions, agents, fixtures ---------------------------------------------------


async def test_a_new_session_takes_the_configured_defaults(ledger: Ledger, make: Make) -> None:
    box = await ledger.runners.add("box", code_hash=hash_secret("c"), expires_at=time.time() + 60)
    orch = make(default_runner="box", default_workspace="app", default_mode="auto-read")
    run, disposition = await submit(orch, "hello", created_by="alice")
    assert disposition == "started"
    session = await ledger.sessions.get(run.session_id)
    assert (session.agent, session.runner_id, session.workspace, session.mode) == (
        "plain",
        box.id,
        "app",
        "auto-read",
    )
    assert session.created_by == "alice"
    assert (run.state, run.agent, run.input, run.created_by) == (
        RunState.QUEUED,
        "plain",
        "hello",
        "alice",
    )
    (queued,) = await ledger.events.read(run.id)
    assert (queued.seq, queued.kind) == (1, "run.queued")
    assert json.loads(queued.payload) == {"input": "hello", "agent": "plain"}
    assert metric(orch, "tether_runs_created_total") == 1


async def test_a_default_runner_that_does_not_exist_leaves_the_session_without_one(
    ledger: Ledger, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    orch = make(default_runner="ghost", default_workspace="app")
    with caplog.at_level(logging.WARNING, logger="tether.gateway.orchestrator"):
        run, _ = await submit(orch)
    session = await ledger.sessions.get(run.session_id)
    assert (session.runner_id, session.workspace) == (None, "app")
    assert any("names no runner" in r.getMessage() for r in caplog.records)


async def test_the_agent_asked_for_runs_the_new_sessions_first_run(
    ledger: Ledger, make: Make
) -> None:
    orch = make([Agent("plain"), Agent("other")])
    run, _ = await submit(orch, agent="other")
    assert run.agent == "other"
    assert json.loads((await ledger.events.read(run.id))[0].payload)["agent"] == "other"


async def test_a_queued_event_is_published(ledger: Ledger, make: Make) -> None:
    orch = make()
    first, _ = await submit(orch)
    watcher = Sessions(orch.run_log.fanout, first.session_id)
    second, _ = await submit(orch, "again", session_id=first.session_id)
    assert [(e.run_id, e.seq, e.kind) for e in watcher.events] == [(second.id, 1, "run.queued")]
    assert watcher.events[0] == (await ledger.events.read(second.id))[0]


async def test_an_unknown_agent_is_invalid_params_and_creates_nothing(
    ledger: Ledger, make: Make
) -> None:
    orch = make([Agent("plain"), Agent("other")])
    with pytest.raises(InvalidParams, match=r"unknown agent 'nope' \(available: other, plain\)"):
        await submit(orch, agent="nope")
    assert (await ledger.sessions.list())[0] == []  # no session made for a refused run
    run, _ = await submit(orch)
    with pytest.raises(InvalidParams) as info:
        await submit(orch, session_id=run.session_id, agent="nope")
    assert info.value.data == {"field": "params.agent"}
    assert len((await ledger.runs.list(session_id=run.session_id))[0]) == 1


async def test_an_unknown_default_agent_is_invalid_params(ledger: Ledger, make: Make) -> None:
    orch = make([Agent("plain")], default_agent="gone")
    with pytest.raises(InvalidParams, match="unknown agent 'gone'"):
        await submit(orch)
    assert (await ledger.sessions.list())[0] == []


async def test_a_session_that_does_not_exist_is_not_found(make: Make) -> None:
    with pytest.raises(NotFound):
        await submit(make(), session_id="ses_missing")


async def test_a_fixture_agent_is_forbidden_to_a_client(ledger: Ledger, make: Make) -> None:
    orch = make([Agent("plain"), Agent("script", fixture=True)])
    for role in ("client", "runner", None):
        with pytest.raises(Forbidden, match="test fixture") as info:
            await submit(orch, agent="script", role=role)
        assert info.value.data == {"agent": "script"}
    assert (await ledger.sessions.list())[0] == []
    run, _ = await submit(orch)  # an existing session does not make it allowed either
    with pytest.raises(Forbidden):
        await submit(orch, session_id=run.session_id, agent="script")


async def test_a_fixture_agent_is_allowed_to_admin_trusted_or_named_callers(
    make: Make,
) -> None:
    orch = make([Agent("plain"), Agent("script", fixture=True)], fixture_principals=["local-admin"])
    by_admin, _ = await submit(orch, agent="script", role="admin")
    trusted, _ = await submit(orch, agent="script", role="client", trusted=True)
    named, _ = await submit(orch, agent="script", role="client", created_by="local-admin")
    assert {by_admin.agent, trusted.agent, named.agent} == {"script"}


async def test_a_second_run_of_a_session_is_queued_behind_the_first(make: Make) -> None:
    orch = make()
    first, disposition = await submit(orch)
    assert disposition == "started"
    second, disposition = await submit(orch, session_id=first.session_id, steer=True)
    assert disposition == "queued"  # no active run here to steer: queued behind the first
    assert second.id != first.id
    _, disposition = await submit(orch)
    assert disposition == "started"  # another session has nothing ahead


# ---- steering -----------------------------------------------------------------------------


async def active_run(orch: Orchestrator, agent: Agent) -> Run:
    await orch.start()
    run, _ = await submit(orch)
    await asyncio.wait_for(agent.started.wait(), unit(10))
    return run


async def test_input_for_an_active_run_is_steered_into_it(ledger: Ledger, make: Make) -> None:
    agent = Agent("plain")
    orch = make([agent])
    run = await active_run(orch, agent)
    steered, disposition = await submit(orch, "also this", session_id=run.session_id, steer=True)
    assert (steered.id, disposition) == (run.id, "steered")
    assert (await kinds(ledger, run.id))[-1] == "steering.received"
    agent.release.set()
    done = await state(ledger, run.id, {RunState.SUCCEEDED, RunState.FAILED})
    assert (done.state, done.output) == (RunState.SUCCEEDED, "also this")
    assert agent.steering == ["also this"]
    assert len((await ledger.runs.list(session_id=run.session_id))[0]) == 1  # no new run


async def test_input_for_a_run_being_ended_becomes_the_next_run(ledger: Ledger, make: Make) -> None:
    agent = Agent("plain")
    orch = make([agent])
    run = await active_run(orch, agent)
    orch.tasks[run.id].finishing = True  # the agent returned; its end is being recorded
    later, disposition = await submit(orch, "late", session_id=run.session_id, steer=True)
    assert later.id != run.id
    assert disposition == "queued"  # not "steered" into a run that would never read it
    agent.release.set()
    await state(ledger, run.id, {RunState.SUCCEEDED, RunState.FAILED})
    done = await state(ledger, later.id, {RunState.SUCCEEDED, RunState.FAILED})
    assert done.input == "late"


async def test_steering_beyond_the_queue_is_dropped(ledger: Ledger, make: Make) -> None:
    agent = Agent("plain")
    orch = make([agent], steering_queue=1)
    run = await active_run(orch, agent)
    _, first = await submit(orch, "one", session_id=run.session_id, steer=True)
    dropped, second = await submit(orch, "two", session_id=run.session_id, steer=True)
    assert (first, second) == ("steered", "dropped")
    assert dropped.id == run.id
    events = await ledger.events.read(run.id)
    assert [e.kind for e in events][-2:] == ["steering.received", "steering.dropped"]
    assert json.loads(events[-1].payload) == {
        "text": "two",
        "reason": "queue_full",
        "sender": "alice",
    }
    agent.release.set()
    done = await state(ledger, run.id, {RunState.SUCCEEDED, RunState.FAILED})
    assert done.output == "one"


async def test_a_backend_without_steering_gets_a_new_run_instead(
    ledger: Ledger, make: Make
) -> None:
    agent = Agent("plain", steering=False)
    orch = make([agent])
    run = await active_run(orch, agent)
    queued, disposition = await submit(orch, "more", session_id=run.session_id, steer=True)
    assert disposition == "queued"
    assert queued.id != run.id
    assert "steering.received" not in await kinds(ledger, run.id)


async def test_steer_false_always_queues_a_new_run(ledger: Ledger, make: Make) -> None:
    agent = Agent("plain")
    orch = make([agent])
    run = await active_run(orch, agent)
    queued, disposition = await submit(orch, "later", session_id=run.session_id, steer=False)
    assert disposition == "queued"
    assert queued.id != run.id
    assert agent.steering == []


async def test_the_agent_gets_the_input_as_typed_and_the_ledger_a_redacted_copy(
    ledger: Ledger, make: Make
) -> None:
    agent = Agent("plain")
    orch = make([agent])
    await orch.start()
    secret = "sk-proj-" + "Z" * 40
    run, _ = await submit(orch, f"use the key {secret}")
    await asyncio.wait_for(agent.started.wait(), unit(10))
    assert agent.inputs == [f"use the key {secret}"]
    stored = await ledger.runs.get(run.id)
    assert secret not in stored.input
    assert all(secret not in e.payload for e in await ledger.events.read(run.id))


# ---- cancel -------------------------------------------------------------------------------


async def test_cancelling_a_queued_run_ends_it_at_once(ledger: Ledger, make: Make) -> None:
    orch = make()
    run, _ = await submit(orch)
    watcher = Sessions(orch.run_log.fanout, run.session_id)
    ended = await orch.cancel(run.id, "changed my mind")
    assert (ended.state, ended.reason) == (RunState.CANCELLED, "cancelled")
    assert ended == await ledger.runs.get(run.id)
    events = await ledger.events.read(run.id)
    assert [(e.seq, e.kind) for e in events] == [(1, "run.queued"), (2, "run.cancelled")]
    assert json.loads(events[1].payload) == {
        "reason": "cancelled",
        "output": None,
        "message": "changed my mind",
    }
    assert watcher.events == events[1:]
    assert metric(orch, "tether_runs_finished_total", state="cancelled", reason="cancelled") == 1
    assert await orch.cancel(run.id) == ended  # a finished run is left as it is
    assert len(await ledger.events.read(run.id)) == 2


async def test_cancelling_a_run_that_does_not_exist_is_not_found(make: Make) -> None:
    with pytest.raises(NotFound):
        await make().cancel("run_missing")


async def test_cancelling_an_active_run_stops_it_through_its_owner(
    ledger: Ledger, make: Make
) -> None:
    agent = Agent("plain")
    orch = make([agent])
    run = await active_run(orch, agent)
    flagged = await orch.cancel(run.id, "stop")
    assert flagged.state == RunState.RUNNING  # still the owner's to end
    assert flagged.cancel_requested_at is not None
    done = await state(ledger, run.id, {RunState.CANCELLED, RunState.FAILED, RunState.SUCCEEDED})
    assert done.state == RunState.CANCELLED
    assert "run.cancel_requested" in await kinds(ledger, run.id)


class Forger(Agent):
    """An agent that tries to write what only the gateway or a runner may say."""

    def __init__(self) -> None:
        super().__init__("forger")
        self.refused: list[str] = []

    async def run(self, ctx: RunContext) -> Outcome:
        forged: list[RunEvent] = [
            RunSucceeded(output="all done"),
            ApprovalResolved(
                request="req_x", handle="abcd", decision="allow_once", by="me", at=1.0
            ),
            ToolCallOutput(call_id="call_x", stream="stdout", text="fake output"),
            ToolCallDecided(call_id="call_x", decision="allow", by="usr_boss", rule="trust me"),
        ]
        for event in forged:
            try:
                await ctx.emit(event)
            except InvalidParams as exc:
                self.refused.append(str(exc.data["kind"]))
        await ctx.emit(AgentUsage(model="m", input_tokens=10, output_tokens=3))
        await ctx.emit(AgentStatus(text="thinking"))
        return Outcome(state="succeeded", output="honest")


async def test_an_agent_cannot_record_what_the_gateway_or_a_runner_says(
    ledger: Ledger, make: Make
) -> None:
    agent = Forger()
    orch = make([agent])
    await orch.start()
    run, _ = await submit(orch)
    done = await state(ledger, run.id, {RunState.SUCCEEDED, RunState.FAILED})
    assert (done.state, done.output) == (RunState.SUCCEEDED, "honest")
    assert agent.refused == [
        "run.succeeded",
        "approval.resolved",
        "tool.call.output",
        "tool.call.decided",
    ]
    recorded = await kinds(ledger, run.id)
    assert recorded.count("run.succeeded") == 1  # the real end only
    assert "approval.resolved" not in recorded
    assert "tool.call.output" not in recorded
    assert [k for k in recorded if k in ("agent.usage", "agent.status")] == [
        "agent.usage",
        "agent.status",
    ]
