"""Hypothesis state-machine test of runs and leases against a small model, on both engines."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.support.databases import PgTemplate, pg_url
from tether.config import LedgerConfig
from tether.errors import Conflict
from tether.ledger import TERMINAL, TRANSITIONS, Ledger, NewEvent
from tether.types import RunState

OWNERS = ["a", "b", "c"]
LEASE = 10.0


@dataclass
class Model:
    session: int
    state: RunState = RunState.QUEUED
    owner: str | None = None
    expires: float | None = None
    epoch: int = 0
    attempts: int = 0


class LeaseMachine(RuleBasedStateMachine):
    engine = "sqlite"
    template = PgTemplate()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="tt-hyp-"))
        self.db_name: str | None = None
        url = None
        if self.engine == "postgres":
            self.loop.run_until_complete(self.template.prepare(self.tmp))
            self.db_name = self.loop.run_until_complete(self.template.copy())
            url = pg_url(self.db_name)
        self.ledger: Ledger = self.run(Ledger.open(LedgerConfig(database_url=url), self.tmp))
        self.now = 1000.0
        self.runs: dict[str, Model] = {}
        self.sessions: list[str] = []
        self.epochs_seen: dict[str, list[int]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.ledger.aclose())
        if self.db_name:
            self.run(PgTemplate.drop(self.db_name))
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize()
    def make_sessions(self) -> None:
        for _ in range(2):
            self.sessions.append(self.run(self.ledger.sessions.create(agent="script")).id)

    @rule(session=st.integers(0, 1))
    def create(self, session: int) -> None:
        event = NewEvent(
            seq=1, kind="run.queued", source="gateway", payload="{}", created_at=self.now
        )
        run = self.run(
            self.ledger.runs.create(
                session_id=self.sessions[session],
                agent="s",
                input="",
                created_by=None,
                event=event,
                now=self.now,
            )
        )
        self.runs[run.id] = Model(session)

    def _claimable(self) -> str | None:
        for run_id, m in sorted(self.runs.items()):
            if m.state != RunState.QUEUED:
                continue
            same = [(rid, x) for rid, x in self.runs.items() if x.session == m.session]
            if any(x.state in (RunState.RUNNING, RunState.WAITING) for _, x in same):
                continue
            if any(x.state == RunState.QUEUED and rid < run_id for rid, x in same):
                continue
            return run_id
        return None

    @rule(owner=st.sampled_from(OWNERS))
    def claim(self, owner: str) -> None:
        expected = self._claimable()
        got = self.run(self.ledger.runs.claim_next(owner, LEASE, now=self.now))
        assert (got.id if got else None) == expected
        if got is not None:
            m = self.runs[got.id]
            m.state, m.owner, m.expires = RunState.RUNNING, owner, self.now + LEASE
            m.epoch += 1
            m.attempts += 1

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data(), owner=st.sampled_from(OWNERS), stale=st.booleans())
    def renew(self, data: st.DataObject, owner: str, stale: bool) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        m = self.runs[run_id]
        epoch = m.epoch - 1 if stale else m.epoch
        ok = (
            m.state in (RunState.RUNNING, RunState.WAITING)
            and m.owner == owner
            and epoch == m.epoch
        )
        try:
            self.run(self.ledger.runs.renew(run_id, owner, epoch, LEASE, now=self.now))
        except Conflict:
            assert not ok
        else:
            assert ok
            m.expires = self.now + LEASE

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data(), to=st.sampled_from(list(RunState)), stale=st.booleans())
    def transition(self, data: st.DataObject, to: RunState, stale: bool) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        m = self.runs[run_id]
        epoch = m.epoch - 1 if stale else m.epoch
        active = (RunState.RUNNING, RunState.WAITING)
        busy = any(
            x.session == m.session and x.state in active
            for rid, x in self.runs.items()
            if rid != run_id
        )
        ok = to in TRANSITIONS[m.state] and epoch == m.epoch and not (to in active and busy)
        try:
            self.run(self.ledger.runs.transition(run_id, epoch=epoch, to=to, now=self.now))
        except Conflict:
            assert not ok
        else:
            assert ok
            if to == RunState.RUNNING and m.state == RunState.QUEUED:
                pass  # only claims start runs in practice; the table allows it
            m.state = to
            if to in TERMINAL:
                m.owner, m.expires = None, None

    @rule(seconds=st.sampled_from([1.0, 5.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data(), owner=st.sampled_from(OWNERS))
    def reclaim(self, data: st.DataObject, owner: str) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        m = self.runs[run_id]
        stale = m.owner is None or m.expires is None or m.expires < self.now
        ok = m.state in (RunState.RUNNING, RunState.WAITING) and stale
        got = self.run(
            self.ledger.runs.reclaim(
                run_id, epoch=m.epoch, owner=owner, lease_seconds=LEASE, now=self.now
            )
        )
        assert (got is not None) == ok
        if got is not None:
            m.owner, m.expires = owner, self.now + LEASE
            m.epoch += 1
            m.attempts += 1

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        m = self.runs[run_id]
        ok = m.state in (RunState.RUNNING, RunState.WAITING) and m.owner is not None
        assert (
            self.run(self.ledger.runs.release(run_id, m.owner or "nobody", m.epoch, now=self.now))
            == ok
        )
        if ok:
            m.owner, m.expires = None, None

    @invariant()
    def matches_model(self) -> None:
        active_per_session: dict[int, int] = {}
        for run_id, m in self.runs.items():
            run = self.run(self.ledger.runs.get(run_id))
            assert (run.state, run.owner, run.epoch, run.attempts) == (
                m.state,
                m.owner,
                m.epoch,
                m.attempts,
            )
            seen = self.epochs_seen.setdefault(run_id, [])
            assert not seen or run.epoch >= seen[-1]  # epochs never go back
            seen.append(run.epoch)
            if run.state in (RunState.RUNNING, RunState.WAITING):
                active_per_session[m.session] = active_per_session.get(m.session, 0) + 1
        assert all(n <= 1 for n in active_per_session.values())


class PostgresLeaseMachine(LeaseMachine):
    engine = "postgres"


_fast = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
)
_slow = settings(
    max_examples=10, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
)

TestLeasesSqlite = LeaseMachine.TestCase
TestLeasesSqlite.settings = _fast
TestLeasesPostgres = pytest.mark.postgres(PostgresLeaseMachine.TestCase)
TestLeasesPostgres.settings = _slow
