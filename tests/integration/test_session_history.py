"""``session.history``: a session's latest runs with their events in one answer (what the
web console opens a session with), bounded in size, and only for who may see it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support import runs as r
from tests.support.people import MEMBERS_MAY_SCRIPT, add_user, as_user
from tests.support.process import GatewayProcess
from tether.errors import NotFound
from tether.gateway.runs_api import HISTORY_BYTES
from tether.protocol.methods import RUN_EVENTS, SESSION_HISTORY
from tether.protocol.runs import RunEventsParams, SessionHistoryParams
from tether.transport.client import RpcClient, connect_ipc

MakeGateway = Callable[..., GatewayProcess]


async def every_event(c: RpcClient, run_id: str, after: int = 0) -> list[tuple[int, str, bytes]]:
    out: list[tuple[int, str, bytes]] = []
    while True:
        page = await c.call(RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after))
        out += [(e.seq, e.kind, bytes(e.payload)) for e in page.events]
        if len(page.events) < 500:
            return out
        after = page.events[-1].seq


async def test_the_latest_runs_oldest_first_with_every_event(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, "say one")
        sid = first.run.session_id
        ids = [first.run.id]
        for text in ("events 600 8\nsay two", "say **three**"):
            started = await r.start(c, text, session_id=sid, steer=False)
            ids.append(started.run.id)
        for run_id in ids:
            await r.wait_state(c, run_id)

        history = await c.call(SESSION_HISTORY, SessionHistoryParams(session_id=sid, runs=2))
        assert history.session.id == sid
        assert [h.run.id for h in history.runs] == ids[1:]  # the latest two, oldest first
        assert history.earlier is True
        for h in history.runs:
            assert h.complete is True
            # every event, in order, exactly as run.events has them (600+ in the first)
            got = [(e.seq, e.kind, bytes(e.payload)) for e in h.events]
            assert got == await every_event(c, h.run.id)
        assert len(history.runs[0].events) > 600
        assert history.runs[1].run.output == "**three**"

        whole = await c.call(SESSION_HISTORY, SessionHistoryParams(session_id=sid))
        assert ([h.run.id for h in whole.runs], whole.earlier) == (ids, False)


async def test_a_history_over_its_budget_says_which_runs_to_read_on(
    make_gateway: MakeGateway,
) -> None:
    """Runs whose events outweigh the budget: the answer stops inside the budget (so it
    stays far inside one frame), marks the run it cut and the runs after it, and reading
    on from their last seq gives exactly the rest: no gap, no duplicate."""
    gw = make_gateway()
    size = 16 * 1024
    count = HISTORY_BYTES // size + 8  # one run alone is over the budget
    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, f"events {count} {size}\nsay big")
        sid = first.run.session_id
        second = await r.start(c, "say after", session_id=sid, steer=False)
        for run_id in (first.run.id, second.run.id):
            await r.wait_state(c, run_id)

        history = await c.call(SESSION_HISTORY, SessionHistoryParams(session_id=sid))
        cut, after = history.runs
        assert (cut.complete, after.complete, after.events) == (False, False, [])
        weight = sum(len(e.payload) for e in cut.events)
        assert 0 < weight <= HISTORY_BYTES
        for h in (cut, after):
            shown = [(e.seq, e.kind, bytes(e.payload)) for e in h.events]
            last = h.events[-1].seq if h.events else 0
            assert shown + await every_event(c, h.run.id, last) == await every_event(c, h.run.id)
        assert json.loads(bytes(cut.events[-1].payload))["text"] == "x" * size


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_another_users_session_is_not_found(make_gateway: MakeGateway, role: str) -> None:
    gw = make_gateway(**MEMBERS_MAY_SCRIPT)
    async with await connect_ipc(gw.socket) as owner:
        theirs = await r.start(owner, "say private")
        await r.wait_state(owner, theirs.run.id)
    async with await as_user(gw, await add_user(gw, "mallory", role)) as c:
        with pytest.raises(NotFound):
            await c.call(SESSION_HISTORY, SessionHistoryParams(session_id=theirs.run.session_id))
        with pytest.raises(NotFound):
            await c.call(SESSION_HISTORY, SessionHistoryParams(session_id="ses_nope"))
    if role == "member":
        async with await as_user(gw, await add_user(gw, "alice")) as alice:
            mine = await r.start(alice, "say mine")
            await r.wait_state(alice, mine.run.id)
            history = await alice.call(
                SESSION_HISTORY, SessionHistoryParams(session_id=mine.run.session_id)
            )
            assert [h.run.id for h in history.runs] == [mine.run.id]
