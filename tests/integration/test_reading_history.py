"""Reading what happened: ``run.events`` pages and ``session.history`` (a session's latest
runs with their events in one answer, what the web console opens a session with), each
bounded in size so it fits a frame, and only for who may see it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support import runs as r
from tests.support.people import MEMBERS_MAY_SCRIPT, add_user, as_user
from tests.support.process import GatewayProcess
from tether.errors import NotFound, TooLarge
from tether.gateway.runs_api import PAGE_BYTES
from tether.protocol.methods import (
    ARTIFACT_GET,
    RUN_CREATE,
    RUN_EVENTS,
    RUN_LIST,
    SESSION_HISTORY,
)
from tether.protocol.runs import (
    ArtifactGetParams,
    RunCreateParams,
    RunEventsParams,
    RunListParams,
    SessionHistoryParams,
)
from tether.transport.client import RpcClient, connect_ipc

MakeGateway = Callable[..., GatewayProcess]


async def every_event(c: RpcClient, run_id: str, after: int = 0) -> list[tuple[int, str, bytes]]:
    out: list[tuple[int, str, bytes]] = []
    while True:
        page = await c.call(RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after))
        out += [(e.seq, e.kind, bytes(e.payload)) for e in page.events]
        if not page.more:
            return out
        after = page.last_seq


async def test_pages_of_large_events_stop_inside_a_frame_and_say_there_is_more(
    make_gateway: MakeGateway,
) -> None:
    """Events of 60 KB (just under what an event row holds inline): a page of 500 of them
    would be 30 MB, which a client refuses (and would wait for); pages stop at the
    budget instead, and reading on while they say ``more`` gives every event once."""
    gw = make_gateway()
    size = 60_000
    async with await connect_ipc(gw.socket) as c:
        started = await r.start(c, f"events 40 {size}\nsay done")
        await r.wait_state(c, started.run.id)
        pages, after = [], 0
        while True:
            page = await c.call(RUN_EVENTS, RunEventsParams(run_id=started.run.id, after_seq=after))
            pages.append(page)
            if not page.more:
                break
            after = page.last_seq
        assert len(pages) >= 3
        for page in pages:
            assert sum(len(e.payload) for e in page.events) <= PAGE_BYTES
        seqs = [e.seq for page in pages for e in page.events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert sum(e.kind == "agent.delta" for page in pages for e in page.events) == 40
        assert pages[-1].events[-1].kind == "run.succeeded"

        short = await c.call(RUN_EVENTS, RunEventsParams(run_id=started.run.id, limit=3))
        assert ([e.seq for e in short.events], short.more) == ([1, 2, 3], True)
        rest = await c.call(RUN_EVENTS, RunEventsParams(run_id=started.run.id, after_seq=seqs[-1]))
        assert (rest.events, rest.more, rest.last_seq) == ([], False, seqs[-1])


async def test_an_answer_over_the_frame_limit_is_refused_at_once_not_lost(
    make_gateway: MakeGateway,
) -> None:
    """An answer that would outgrow the frame limit (here a slice of an artifact asked
    for whole): the gateway answers ``too_large`` instead of sending what the client
    would drop (and then wait for), and the connection goes on."""
    limit = 32 * 1024
    gw = make_gateway(
        TETHER_LIMITS__MAX_FRAME_BYTES=str(limit), TETHER_LEDGER__INLINE_PAYLOAD_BYTES="8192"
    )
    async with await connect_ipc(gw.socket, max_frame_bytes=limit) as c:
        started = await c.call(RUN_CREATE, RunCreateParams(input="events 1 40000\nsay x"))
        await r.wait_state(c, started.run.id)
        page = await c.call(RUN_EVENTS, RunEventsParams(run_id=started.run.id))
        (ref,) = [json.loads(bytes(e.payload)) for e in page.events if e.kind == "agent.delta"]
        whole = ArtifactGetParams(artifact_id=ref["artifact"], limit=512 * 1024)
        with pytest.raises(TooLarge, match="ask for less"):
            await c.call(ARTIFACT_GET, whole, timeout=5)
        piece = ArtifactGetParams(artifact_id=ref["artifact"], limit=16 * 1024)
        chunk = await c.call(ARTIFACT_GET, piece)
        assert (len(chunk.data), chunk.size, chunk.eof) == (16 * 1024, ref["size"], False)


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
    count = PAGE_BYTES // size + 8  # one run alone is over the budget
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
        assert 0 < weight <= PAGE_BYTES
        for h in (cut, after):
            shown = [(e.seq, e.kind, bytes(e.payload)) for e in h.events]
            last = h.events[-1].seq if h.events else 0
            assert shown + await every_event(c, h.run.id, last) == await every_event(c, h.run.id)
        assert json.loads(bytes(cut.events[-1].payload))["text"] == "x" * size


async def test_long_runs_count_against_the_budget_and_the_latest_stay(
    make_gateway: MakeGateway,
) -> None:
    """Runs whose input and output are long (here 8 of 300 KB each, twice the frame
    limit in all): the answer still fits a frame, with the latest runs that fit and
    ``earlier`` saying there are more; ``run.list`` pages the same way."""
    gw = make_gateway()
    text = "y" * (150 * 1024)
    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, f"say {text}")
        sid, ids = first.run.session_id, [first.run.id]
        for _ in range(7):
            ids.append((await r.start(c, f"say {text}", session_id=sid, steer=False)).run.id)
        for run_id in ids:
            await r.wait_state(c, run_id)
        history = await c.call(SESSION_HISTORY, SessionHistoryParams(session_id=sid))
        shown = [h.run.id for h in history.runs]
        assert 1 <= len(shown) < len(ids)
        assert (shown, history.earlier) == (ids[-len(shown) :], True)
        assert history.runs[-1].run.output == text

        listed: list[str] = []  # run.list pages shrink the same way, and the cursor goes on
        cursor: str | None = None
        for _ in range(len(ids)):
            page = await c.call(RUN_LIST, RunListParams(session_id=sid, cursor=cursor))
            listed += [run.id for run in page.runs]
            if (cursor := page.next_cursor) is None:
                break
        assert listed == ids[::-1]


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
