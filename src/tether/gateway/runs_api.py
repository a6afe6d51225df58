"""Handlers of ``run.*`` and ``session.*``: the ledger and orchestrator as seen over RPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tether.errors import InvalidParams, NotFound
from tether.gateway.fanout import ConnectionSink, Fanout, Subscription, event_info
from tether.gateway.handlers import MethodHandlers
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.orchestrator import Orchestrator
from tether.gateway.peer import Peer
from tether.ledger import Ledger, Run, Session
from tether.protocol import methods as m
from tether.protocol.runs import (
    ArtifactChunk,
    ArtifactGetParams,
    EventInfo,
    EventPage,
    RunCancelParams,
    RunCreated,
    RunCreateParams,
    RunEventsParams,
    RunGetParams,
    RunHistory,
    RunInfo,
    RunListParams,
    RunPage,
    RunSubscribeParams,
    SessionGetParams,
    SessionHistory,
    SessionHistoryParams,
    SessionInfo,
    SessionListParams,
    SessionPage,
    SessionUpdateParams,
    Subscribed,
    UnsubscribeParams,
)
from tether.protocol.system import Empty

__all__ = ["PAGE_BYTES", "RunsApi", "owner_filter", "run_info", "session_info"]

PAGE_BYTES = 384 * 1024
"""About how much event payload one answer of ``run.events`` or ``session.history``
carries with the default frame limit of 1 MB (3/8 of it; an event's payload may be
64 KB): a page stops there and says there is more."""
_ENVELOPE = 128
"""What an event's fields around its payload take in JSON, about."""
_RUN_ENVELOPE = 512
"""What a run's fields besides its input and output take in JSON, about."""


def _fitting(runs: list[Run], budget: int) -> tuple[list[Run], int]:
    """The first of ``runs`` whose inputs and outputs fit ``budget`` (the first always),
    and what is left of it (below 0 when the first alone is over)."""
    kept: list[Run] = []
    for run in runs:
        weight = len(run.input) + len(run.output or "") + _RUN_ENVELOPE
        if kept and weight > budget:
            break
        budget -= weight
        kept.append(run)
    return kept, budget


def run_info(run: Run) -> RunInfo:
    return RunInfo(
        id=run.id,
        session_id=run.session_id,
        agent=run.agent,
        state=run.state,
        reason=run.reason,
        input=run.input,
        output=run.output,
        created_by=run.created_by,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        attempts=run.attempts,
        epoch=run.epoch,
        owner=run.owner,
        cancel_requested=run.cancel_requested_at is not None,
    )


def session_info(session: Session) -> SessionInfo:
    return msgspec.convert(msgspec.structs.asdict(session), SessionInfo, strict=False)


def owner_filter(peer: Peer) -> str | None:
    """None for an owner (who sees everything), else the principal whose work it sees."""
    return None if peer.is_owner else peer.principal.id


class RunsApi:
    """Binds the run and session methods to the ledger, orchestrator and fan-out.

    Each person sees their own work: a run or session another user created is
    ``not_found`` (exactly as one that does not exist), and lists hold only their own.
    Owners see everything."""

    def __init__(
        self,
        ledger: Ledger,
        orchestrator: Orchestrator,
        fanout: Fanout,
        metrics: GatewayMetrics,
        *,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self.page_bytes = page_bytes
        """How much one page of events carries, about (see :data:`PAGE_BYTES`)."""
        self.ledger = ledger
        self.orchestrator = orchestrator
        self.fanout = fanout
        self.metrics = metrics
        self.on_session_changed: list[Callable[[Session, Session], None]] = []
        """Called with (before, after) when a session's settings change."""

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.RUN_CREATE, self.create)
        handlers.add(m.RUN_GET, self.get)
        handlers.add(m.RUN_LIST, self.list)
        handlers.add(m.RUN_EVENTS, self.events)
        handlers.add(m.ARTIFACT_GET, self.artifact)
        handlers.add(m.RUN_SUBSCRIBE, self.subscribe)
        handlers.add(m.RUN_UNSUBSCRIBE, self.unsubscribe)
        handlers.add(m.RUN_CANCEL, self.cancel)
        handlers.add(m.SESSION_LIST, self.list_sessions)
        handlers.add(m.SESSION_GET, self.get_session)
        handlers.add(m.SESSION_HISTORY, self.history)
        handlers.add(m.SESSION_UPDATE, self.update_session)

    # ---- what a person may see -----------------------------------------------------

    async def session_for(self, peer: Peer, session_id: str) -> Session:
        """The session, if ``peer`` may see it; else ``not_found``."""
        session = await self.ledger.sessions.get(session_id)
        if not peer.is_owner and session.created_by != peer.principal.id:
            raise NotFound(f"session {session_id} does not exist", data={"session_id": session_id})
        return session

    async def run_for(self, peer: Peer, run_id: str) -> Run:
        """The run, if ``peer`` may see it (its session is theirs); else ``not_found``."""
        run = await self.ledger.runs.get(run_id)
        if not peer.is_owner:
            try:
                await self.session_for(peer, run.session_id)
            except NotFound:
                raise NotFound(f"run {run_id} does not exist", data={"run_id": run_id}) from None
        return run

    # ---- handlers --------------------------------------------------------------------

    async def create(self, peer: Peer, p: RunCreateParams) -> RunCreated:
        orch = self.orchestrator
        if p.session_id is not None:
            await self.session_for(peer, p.session_id)
        run, disposition = await orch.submit(
            session_id=p.session_id,
            agent=p.agent,
            text=p.input,
            created_by=peer.principal.id,
            steer=p.steer,
            role=peer.role_name,
            user_role=peer.user_role,
        )
        return RunCreated(run=run_info(run), disposition=disposition)  # type: ignore[arg-type]

    async def get(self, peer: Peer, p: RunGetParams) -> RunInfo:
        return run_info(await self.run_for(peer, p.run_id))

    async def list(self, peer: Peer, p: RunListParams) -> RunPage:
        ledger = self.ledger
        if p.session_id is not None:
            await self.session_for(peer, p.session_id)
        runs, cursor = await ledger.runs.list(
            session_id=p.session_id,
            states=p.states,
            before=p.cursor,
            limit=p.limit,
            owner=owner_filter(peer),
        )
        kept, _ = _fitting(runs, self.page_bytes)  # long inputs and outputs: a shorter page
        if len(kept) < len(runs):
            cursor = kept[-1].id
        return RunPage(runs=[run_info(r) for r in kept], next_cursor=cursor)

    async def artifact(self, peer: Peer, p: ArtifactGetParams) -> ArtifactChunk:
        ledger = self.ledger
        art = await ledger.events.get_artifact(p.artifact_id)
        if not peer.is_owner:
            missing = NotFound(f"artifact {p.artifact_id} does not exist")
            if art.run_id is None:
                raise missing
            try:
                await self.run_for(peer, art.run_id)
            except NotFound:
                raise missing from None
        data = art.content[p.offset : p.offset + p.limit]
        return ArtifactChunk(
            id=art.id,
            run_id=art.run_id,
            name=art.name,
            media_type=art.media_type,
            size=art.size,
            sha256=art.sha256,
            offset=p.offset,
            data=data,
            eof=p.offset + len(data) >= art.size,
        )

    async def events(self, peer: Peer, p: RunEventsParams) -> EventPage:
        ledger = self.ledger
        run = await self.run_for(peer, p.run_id)
        rows = await ledger.events.read(p.run_id, after_seq=p.after_seq, limit=p.limit + 1)
        events: list[EventInfo] = []
        budget = self.page_bytes
        for row in rows[: p.limit]:
            info = event_info(row)
            budget -= len(info.payload) + _ENVELOPE
            if budget < 0 and events:  # (one event always fits a frame)
                break
            events.append(info)
        last = events[-1].seq if events else await ledger.events.last_seq(p.run_id)
        return EventPage(
            events=events, state=run.state, last_seq=last, more=len(rows) > len(events)
        )

    async def subscribe(self, peer: Peer, p: RunSubscribeParams) -> Subscribed:
        ledger, fanout = self.ledger, self.fanout
        if (p.run_id is None) == (p.session_id is None):
            raise InvalidParams(
                "give exactly one of run_id and session_id", data={"field": "params.run_id"}
            )
        if p.run_id is not None:
            await self.run_for(peer, p.run_id)
            after = {p.run_id: p.after_seq}
        else:
            assert p.session_id is not None
            await self.session_for(peer, p.session_id)
            after = dict(p.after)
        sub = Subscription(
            ConnectionSink(peer.conn, queue_limit=max(8, peer.conn.send_queue_frames * 3 // 4)),
            fanout,
            run_id=p.run_id,
            session_id=p.session_id,
            after=after,
            since_run=p.since_run,
            max_buffer=max(64, peer.conn.send_queue_frames),
            on_end=lambda s: self._ended(peer, s),
        )
        peer.subscriptions[sub.id] = sub
        self.metrics.subscriptions.inc()
        sub.start(ledger)  # last: the reply goes out before any event of the backlog
        return Subscribed(subscription=sub.id)

    def _ended(self, peer: Peer, sub: Subscription) -> None:
        if peer.subscriptions.pop(sub.id, None) is not None:
            self.metrics.subscriptions.dec()

    def unsubscribe(self, peer: Peer, p: UnsubscribeParams) -> Empty:
        sub: Any = peer.subscriptions.get(p.subscription)
        if sub is None:
            raise NotFound(f"no subscription {p.subscription} on this connection")
        sub.close()
        return Empty()

    def peer_closed(self, peer: Peer) -> None:
        for sub in list(peer.subscriptions.values()):
            sub.close()

    async def cancel(self, peer: Peer, p: RunCancelParams) -> RunInfo:
        orch = self.orchestrator
        await self.run_for(peer, p.run_id)
        return run_info(await orch.cancel(p.run_id, p.reason))

    async def list_sessions(self, peer: Peer, p: SessionListParams) -> SessionPage:
        ledger = self.ledger
        sessions, cursor = await ledger.sessions.list(
            before=p.cursor, limit=p.limit, owner=owner_filter(peer)
        )
        return SessionPage(sessions=[session_info(s) for s in sessions], next_cursor=cursor)

    async def get_session(self, peer: Peer, p: SessionGetParams) -> SessionInfo:
        return session_info(await self.session_for(peer, p.session_id))

    async def history(self, peer: Peer, p: SessionHistoryParams) -> SessionHistory:
        """The session, its latest runs and as many of their events as the budget holds
        (oldest run first; the run the budget cuts short, and any after it, say so). The
        runs count against the budget too (an input or an output may be long): older
        runs are left out, the latest one never."""
        ledger = self.ledger
        session = await self.session_for(peer, p.session_id)
        newest, cursor = await ledger.runs.list(
            session_id=p.session_id, limit=p.runs, owner=owner_filter(peer)
        )
        kept, budget = _fitting(newest, self.page_bytes)
        runs = kept[::-1]
        # every event costs at least its envelope, so the budget runs out before the rows do
        rows = await ledger.events.read_runs(
            [r.id for r in runs], limit=max(0, budget) // _ENVELOPE + 1
        )
        events: dict[str, list[EventInfo]] = {r.id: [] for r in runs}
        index = {r.id: i for i, r in enumerate(runs)}
        cut = len(runs)
        for row in rows:
            info = event_info(row)
            budget -= len(info.payload) + _ENVELOPE
            if budget < 0:
                cut = index[row.run_id]
                break
            events[row.run_id].append(info)
        return SessionHistory(
            session=session_info(session),
            runs=[
                RunHistory(run=run_info(r), events=events[r.id], complete=i < cut)
                for i, r in enumerate(runs)
            ],
            earlier=cursor is not None or len(kept) < len(newest),
        )

    async def update_session(self, peer: Peer, p: SessionUpdateParams) -> SessionInfo:
        await self.session_for(peer, p.session_id)
        session = await self.change_session(
            p, peer.principal.id, role=peer.role_name, user_role=peer.user_role
        )
        return session_info(session)

    async def change_session(
        self,
        p: SessionUpdateParams,
        principal: str,
        *,
        role: str | None,
        user_role: str | None,
    ) -> Session:
        """Apply a settings change (the caller checked the session is theirs) and tell the
        parts that care (a hosted agent process is stopped when its session moves)."""
        ledger = self.ledger
        before = await ledger.sessions.get(p.session_id)
        if p.agent is not None:
            self.orchestrator.check_agent(p.agent, principal, role, user_role)
        runner_id = None
        clear: set[str] = set()
        if p.runner == "":
            clear.add("runner_id")
        elif p.runner is not None:
            runner_id = (await ledger.runners.find(p.runner)).id
        if p.workspace == "":
            clear.add("workspace")
        if p.agent_thread == "":
            clear.add("agent_thread")
        session = await ledger.sessions.update(
            p.session_id,
            agent=p.agent,
            runner_id=runner_id,
            workspace=p.workspace or None,
            mode=p.mode,
            agent_thread=p.agent_thread or None,
            agent_resume="" if p.agent_thread else None,
            clear=frozenset(clear),
        )
        for changed in self.on_session_changed:
            changed(before, session)
        return session
