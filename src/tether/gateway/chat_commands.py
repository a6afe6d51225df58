"""The ``/`` commands of every chat surface, answered in the person's language.

Each command is one method; :data:`COMMANDS` is the table the router checks. Commands
that change something (``/new``, ``/stop``, settings, decisions) need a member or owner;
a viewer may ask (``/status``, ``/runs``, ``/help``, a setting without a value).
``/stop`` always ends the session's runs (a queued one at once, an active one stopped
by its owner, escalating as ``run.cancel`` does); ``/new`` always starts a fresh session.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, get_args

import msgspec

from tether.agents import AgentBackend
from tether.errors import InvalidParams, NotFound, TetherError
from tether.gateway.auth import Principal
from tether.gateway.chat_files import ChatFiles
from tether.gateway.orchestrator import Orchestrator
from tether.gateway.phrases import Lang, decision_words, say
from tether.gateway.registry import RunnerRegistry
from tether.gateway.requests import RequestBroker
from tether.gateway.runs_api import RunsApi
from tether.ledger import ConversationRecord, Ledger, Session
from tether.protocol.runs import SessionUpdateParams
from tether.schedule import local_time
from tether.types import SessionMode

__all__ = ["COMMANDS", "Actor", "ChatCommands", "Context", "Turn"]

SESSION_MODES: tuple[str, ...] = get_args(SessionMode)


@dataclass(frozen=True)
class Actor:
    """Who sent a message, as tether knows them, and the language to answer in."""

    principal: Principal
    lang: Lang
    role: str = "client"
    """The connection role (``client``; ``admin`` for an owner's local client)."""

    @property
    def id(self) -> str:
        return self.principal.id

    @property
    def may_act(self) -> bool:
        """Members and owners start runs and decide; viewers only read."""
        return self.principal.user_role in ("owner", "member")


class Turn(msgspec.Struct, kw_only=True):
    """What handling one message did."""

    disposition: str
    """``started``, ``queued``, ``steered``, ``dropped``, ``command``, ``refused``,
    ``ignored``, ``paired`` or ``failed``."""
    session_id: str | None = None
    run_id: str | None = None
    replies: list[str] = []


class Sessions(Protocol):
    """Where ``/new`` gets a fresh session (the router)."""

    async def fresh_session(
        self, conversation: ConversationRecord | None, actor: Actor, old: Session
    ) -> Session: ...


@dataclass
class Context:
    actor: Actor
    session: Session
    conversation: ConversationRecord | None
    args: str
    reply_to: str | None = None
    """The platform message the command came in (what its answers thread under)."""

    @property
    def lang(self) -> Lang:
        return self.actor.lang


Handler = Callable[["ChatCommands", Context], Awaitable[list[str]]]
COMMANDS: dict[str, tuple[Handler, bool]] = {}
"""Name -> (handler, whether it always changes something)."""
_SETTINGS = frozenset({"runner", "agent", "workspace", "mode"})
"""Commands that show a setting without an argument and change it with one."""


def _command(name: str, *, acts: bool) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (fn, acts)
        return fn

    return register


class ChatCommands:
    def __init__(
        self,
        *,
        ledger: Ledger,
        orchestrator: Orchestrator,
        requests: RequestBroker,
        runs_api: RunsApi,
        registry: RunnerRegistry,
        backends: Mapping[str, AgentBackend],
        router: Sessions,
        files: ChatFiles | None = None,
    ) -> None:
        self.ledger = ledger
        self.orchestrator = orchestrator
        self.requests = requests
        self.runs_api = runs_api
        self.registry = registry
        self.backends = backends
        self.router = router
        self.files = files

    def known(self, name: str) -> bool:
        return name in COMMANDS

    async def run(self, name: str, ctx: Context) -> Turn:
        handler, acts = COMMANDS[name]
        if (acts or (ctx.args and name in _SETTINGS)) and not ctx.actor.may_act:
            return Turn(
                disposition="refused", session_id=ctx.session.id, replies=[say(ctx.lang, "viewer")]
            )
        try:
            replies = await handler(self, ctx)
        except TetherError as exc:
            replies = [say(ctx.lang, "failed_command", reason=exc.message)]
        return Turn(disposition="command", session_id=ctx.session.id, replies=replies)

    # ---- the commands ----------------------------------------------------------------

    @_command("help", acts=False)
    async def help(self, ctx: Context) -> list[str]:
        return [say(ctx.lang, "help")]

    @_command("new", acts=True)
    async def new(self, ctx: Context) -> list[str]:
        session = await self.router.fresh_session(ctx.conversation, ctx.actor, ctx.session)
        ctx.session = session
        return [
            say(
                ctx.lang,
                "new_session",
                session=session.id,
                agent=session.agent,
                runner=await self._runner_name(session),
                workspace=session.workspace or "-",
                mode=session.mode,
            )
        ]

    @_command("stop", acts=True)
    async def stop(self, ctx: Context) -> list[str]:
        runs, _ = await self.ledger.runs.list(
            session_id=ctx.session.id, states=["queued", "running", "waiting"], limit=100
        )
        for run in runs:
            await self.orchestrator.cancel(
                run.id, f"/stop by {ctx.actor.principal.name or ctx.actor.id}"
            )
        if not runs:
            return [say(ctx.lang, "nothing_running")]
        return [say(ctx.lang, "stopped", count=len(runs))]

    @_command("send", acts=True)
    async def send(self, ctx: Context) -> list[str]:
        path = ctx.args.strip()
        if not path:
            return [say(ctx.lang, "send_usage")]
        if self.files is None or ctx.conversation is None:
            return [say(ctx.lang, "send_unsupported")]
        try:
            sent = await self.files.send(
                ctx.session, ctx.actor.principal, ctx.conversation, path, reply_to=ctx.reply_to
            )
        except TetherError as exc:
            if exc.data.get("reason") == "no_files":
                return [say(ctx.lang, "send_unsupported")]
            return [say(ctx.lang, "send_failed", path=path, reason=exc.message)]
        return [say(ctx.lang, "sent", name=sent.name, size=sent.size)]

    @_command("status", acts=False)
    async def status(self, ctx: Context) -> list[str]:
        session = ctx.session
        runs, _ = await self.ledger.runs.list(session_id=session.id, limit=1)
        run = "-"
        if runs:
            latest = runs[0]
            run = f"{latest.id} {latest.state.value}" + (
                f" ({latest.reason})" if latest.reason else ""
            )
        requests = await self.requests.list_for(ctx.actor.principal, session_id=session.id)
        waiting = ", ".join(f"{r.handle} ({r.summary[:60]})" for r in requests) or say(
            ctx.lang, "none"
        )
        online = session.runner_id is not None and self.registry.get(session.runner_id) is not None
        return [
            say(
                ctx.lang,
                "status",
                session=session.id,
                agent=session.agent,
                runner=await self._runner_name(session),
                online=say(ctx.lang, "online" if online else "offline"),
                workspace=session.workspace or "-",
                mode=session.mode,
                run=run,
                requests=waiting,
            )
        ]

    @_command("runs", acts=False)
    async def runs(self, ctx: Context) -> list[str]:
        runs, _ = await self.ledger.runs.list(session_id=ctx.session.id, limit=5)
        if not runs:
            return [say(ctx.lang, "no_runs")]
        lines = "\n".join(
            f"  {r.id} {r.state.value:<9} {time.strftime('%m-%d %H:%M', time.localtime(r.created_at))} "
            f"{r.input.splitlines()[0][:60] if r.input else ''}"
            for r in runs
        )
        return [say(ctx.lang, "runs", lines=lines)]

    @_command("routines", acts=False)
    async def routines(self, ctx: Context) -> list[str]:
        found = await self.ledger.routines.list(session_id=ctx.session.id, limit=50)
        if not found:
            return [say(ctx.lang, "no_routines")]
        lines = []
        for r in found:
            if r.state == "paused" or r.next_fire_at is None:
                when = say(ctx.lang, "routine_paused")
            else:
                when = say(ctx.lang, "routine_next", when=local_time(r.next_fire_at, r.tz))
            lines.append(f"  {r.name}  {r.cron} ({r.tz})  {when}")
        return [say(ctx.lang, "routines", lines="\n".join(lines))]

    @_command("runner", acts=False)
    async def runner(self, ctx: Context) -> list[str]:
        if not ctx.args:
            names = sorted(r.name for r in self.registry.live.values())
            return [self._show(ctx, "runner", await self._runner_name(ctx.session), names)]
        return await self._set(
            ctx, "runner", SessionUpdateParams(session_id=ctx.session.id, runner=ctx.args)
        )

    @_command("agent", acts=False)
    async def agent(self, ctx: Context) -> list[str]:
        if not ctx.args:
            names = sorted(n for n, b in self.backends.items() if not b.capabilities.fixture)
            return [self._show(ctx, "agent", ctx.session.agent, names)]
        return await self._set(
            ctx, "agent", SessionUpdateParams(session_id=ctx.session.id, agent=ctx.args)
        )

    @_command("workspace", acts=False)
    async def workspace(self, ctx: Context) -> list[str]:
        if not ctx.args:
            live = self.registry.get(ctx.session.runner_id) if ctx.session.runner_id else None
            names = sorted(live.workspaces) if live is not None else []
            return [self._show(ctx, "workspace", ctx.session.workspace or "-", names)]
        return await self._set(
            ctx, "workspace", SessionUpdateParams(session_id=ctx.session.id, workspace=ctx.args)
        )

    @_command("mode", acts=False)
    async def mode(self, ctx: Context) -> list[str]:
        if not ctx.args:
            return [self._show(ctx, "mode", ctx.session.mode, list(SESSION_MODES))]
        if ctx.args not in SESSION_MODES:
            return [say(ctx.lang, "usage", usage="/mode " + "|".join(SESSION_MODES))]
        return await self._set(
            ctx,
            "mode",
            SessionUpdateParams(session_id=ctx.session.id, mode=ctx.args),  # type: ignore[arg-type]
        )

    @_command("approve", acts=True)
    async def approve(self, ctx: Context) -> list[str]:
        handle, _, scope = ctx.args.partition(" ")
        if not handle or scope.strip() not in ("", "session"):
            return [say(ctx.lang, "usage", usage="/approve HANDLE [session]")]
        decision = "allow_session" if scope.strip() == "session" else "allow_once"
        return await self._decide(ctx, handle, decision=decision)

    @_command("deny", acts=True)
    async def deny(self, ctx: Context) -> list[str]:
        if not ctx.args or " " in ctx.args:
            return [say(ctx.lang, "usage", usage="/deny HANDLE")]
        return await self._decide(ctx, ctx.args, decision="deny")

    @_command("answer", acts=True)
    async def answer(self, ctx: Context) -> list[str]:
        handle, _, text = ctx.args.partition(" ")
        if not handle or not text.strip():
            return [say(ctx.lang, "usage", usage="/answer HANDLE TEXT")]
        return await self._decide(ctx, handle, answer=text.strip())

    @_command("pair", acts=False)
    async def pair(self, ctx: Context) -> list[str]:
        return [say(ctx.lang, "already_linked", name=ctx.actor.principal.name or ctx.actor.id)]

    # ---- helpers -------------------------------------------------------------------

    async def _runner_name(self, session: Session) -> str:
        if session.runner_id is None:
            return "-"
        live = self.registry.get(session.runner_id)
        if live is not None:
            return live.name
        try:
            return (await self.ledger.runners.get(session.runner_id)).name
        except NotFound:
            return session.runner_id

    @staticmethod
    def _show(ctx: Context, name: str, value: str, choices: list[str]) -> str:
        more = say(ctx.lang, "choices", values=", ".join(choices)) if choices else ""
        return say(ctx.lang, "setting", name=name, value=value, more=more)

    async def _set(self, ctx: Context, name: str, params: SessionUpdateParams) -> list[str]:
        actor = ctx.actor
        ctx.session = await self.runs_api.change_session(
            params, actor.id, role=actor.role, user_role=actor.principal.user_role
        )
        value: Any = getattr(params, name)
        return [say(ctx.lang, "set", name=name, value=value)]

    async def _decide(
        self, ctx: Context, ref: str, *, decision: str | None = None, answer: str | None = None
    ) -> list[str]:
        ref = ref.strip()
        if not ref.startswith("req_"):
            # a handle names one open request per session: prefer this session's
            mine = [
                r
                for r in await self.ledger.requests.by_handle(ref)
                if r.session_id == ctx.session.id
            ]
            if len(mine) == 1:
                ref = mine[0].id
        try:
            record = await self.requests.resolve(
                ctx.actor.principal, ref, decision=decision, answer=answer
            )
        except InvalidParams as exc:
            return [say(ctx.lang, "failed_command", reason=exc.message)]
        return [
            say(
                ctx.lang,
                "decided",
                handle=record.handle,
                decision=decision_words(record.decision or "", ctx.lang),
            )
        ]
