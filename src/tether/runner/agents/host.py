"""``AgentHost``: the runner's hosted agents (Codex, ACP agents), one process per session.

The gateway drives it with the ``agent.*`` methods (:mod:`tether.protocol.hosted`):

- ``agent.start`` verifies the capability token (tool ``agent:<agent>``, call id the run,
  args ``{"session": …}``, the workspace), then attaches to the turn it already has for
  the run (replaying the events after ``after``) or starts one: the session's process is
  started when it is not running (in its own process group, in the sandbox: see
  :mod:`tether.runner.agents.launch`) and the session's thread resumed. A re-attach
  (``resumed``) for a turn this runner does not know (it restarted) starts nothing: the
  turn ends at once with ``runner_restarted`` and says the thread was kept.
- ``agent.steer`` / ``agent.interrupt`` pass to the agent; an interrupted turn that has
  not ended after ``runner.agent_interrupt_grace`` has its process killed.
- ``agent.ack`` lets the turn's journal forget; ``agent.done`` forgets the turn.

A process that exits while its turn runs fails the turn with ``agent_crashed`` and the
tail of its stderr; the next turn starts it again and resumes the thread. The ACP
agents (:mod:`tether.runner.agents.acp`, presets in :mod:`tether.runner.agents.presets`)
ask for files and commands with ``agent.tool``: the gateway sends those back as tool
calls under a token, which the runner's executor runs. A session
given the user's own CODEX_HOME holds its thread only while a turn runs (its process is
stopped after each turn), so the Codex CLI can continue it meanwhile. When the
gateway is away the agent keeps working: events stay in the journal (memory, then disk,
then the turn is interrupted) and permission requests wait for the gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tether.config import Config
from tether.errors import (
    AgentNotInstalled,
    CapabilityDenied,
    NotFound,
    PolicyDenied,
    RequestTimeout,
    TetherError,
)
from tether.protocol.hosted import (
    AgentAckNote,
    AgentEventNote,
    AgentPermissionAnswer,
    AgentPermissionParams,
    AgentStarted,
    AgentStartParams,
    AgentSteerParams,
    AgentStopParams,
    AgentToolAnswer,
    AgentToolParams,
    AgentTurnParams,
    AgentWithdrawNote,
)
from tether.protocol.methods import AGENT_EVENT, AGENT_PERMISSION, AGENT_TOOL, AGENT_WITHDRAW
from tether.protocol.system import Empty
from tether.runner.agents.agent_process import AgentProcess
from tether.runner.agents.codex import CodexSession
from tether.runner.agents.journal import TurnJournal
from tether.runner.agents.launch import (
    Launch,
    agent_home,
    agent_launch,
    base_env,
    codex_launch,
    codex_sandbox_mode,
    nested_sandbox_ok,
    resolve_program,
    user_codex_home,
)
from tether.runner.agents.presets import PRESETS, Installed, installed
from tether.runner.agents.turns import Permission, Turn
from tether.runner.gateway_link import GatewayLink
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import SandboxInfo
from tether.security.capability import CapabilityVerifier
from tether.security.file_modes import private_dir
from tether.security.redaction import redact, redact_value

if TYPE_CHECKING:
    from tether.runner.agents.acp import AcpSession

_decode_note = msgspec.json.Decoder(AgentEventNote).decode

__all__ = ["PERMISSION_WAIT", "AgentHost", "hosted_here"]

log = logging.getLogger(__name__)

ENDED_KEPT = 1000
"""Ended turns whose last event is kept after ``agent.done``."""
PERMISSION_WAIT = 86_400.0
"""The most a permission request waits for the gateway (its own expiry decides first)."""
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_THREAD_FILE = "thread"


def hosted_here(config: Config) -> list[dict[str, Any]]:
    """The hosted agents a runner with ``config`` could start on this machine: each with
    its program, version and, when it cannot be started, why (``tether agents list
    --here``)."""
    from tether.runner.sandbox import detect

    sandbox = detect(config.runner.sandbox, config.runner.bwrap)
    rows = []
    for found in installed(config, lambda: nested_sandbox_ok(config, sandbox)):
        problem = found.problem
        if problem is None and sandbox.status == "unavailable":
            problem = f"no sandbox here: {sandbox.reason}"
        rows.append(
            {
                "agent": found.id,
                "program": str(found.program) if found.program else None,
                "version": found.version,
                "problem": problem,
            }
        )
    return rows


class AgentHost:
    """See the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        runner_name: str,
        workspaces: dict[str, Path],
        verifier: CapabilityVerifier,
        sandbox: SandboxInfo,
        protected: ProtectedPaths,
        home: Path,
        link: GatewayLink,
        boot_id: str,
        cancel_call: Callable[[str], Any] = lambda _call_id: None,
    ) -> None:
        self.config = config
        self.runner_name = runner_name
        self.workspaces = workspaces
        self.verifier = verifier
        self.sandbox = sandbox
        self.protected = protected
        self.home = home
        self.link = link
        self.boot_id = boot_id
        self.cancel_call = cancel_call
        """Cancels one of the executor's calls (a killed ACP terminal)."""
        self.state_dir = config.data_path / "agents"
        self.sessions: dict[str, CodexSession | AcpSession] = {}
        self.turns: dict[str, Turn] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._side: set[asyncio.Task[Any]] = set()
        agents = config.agents
        names = {*agents.codex.env}
        for preset in PRESETS.values():
            cfg = agents.preset(preset.id)
            names |= {*cfg.env, cfg.key_env or preset.key_env}
        self._secrets = [os.environ[n] for n in sorted(names) if len(os.environ.get(n, "")) >= 8]
        self._mode: str | None = None
        self._nested: bool | None = None
        self._installed: list[Installed] | None = None
        self._ended: collections.OrderedDict[str, tuple[str, AgentEventNote]] = (
            collections.OrderedDict()
        )
        """Run id -> its session and last event, for turns the gateway said it was done
        with: a gateway that died before recording the run's end still gets it."""

    # ---- what this runner hosts --------------------------------------------------------

    def available(self) -> list[str]:
        """The hosted agents this runner can start (their program is installed)."""
        return [a.id for a in self.presets() if a.problem is None]

    def presets(self) -> list[Installed]:
        """The hosted agents as found here (looked up once)."""
        if self._installed is None:
            self._installed = installed(self.config, self.nested_ok)
        return self._installed

    def nested_ok(self) -> bool:
        if self._nested is None:
            self._nested = nested_sandbox_ok(self.config, self.sandbox)
        return self._nested

    @property
    def codex_mode(self) -> str:
        if self._mode is None:
            self._mode = codex_sandbox_mode(self.config, self.sandbox)
            log.info("codex sandbox", extra={"mode": self._mode})
        return self._mode

    # ---- agent.* -------------------------------------------------------------------

    async def start(self, p: AgentStartParams) -> AgentStarted:
        self.verifier.verify(
            p.token,
            call_id=p.run_id,
            tool=f"agent:{p.agent}",
            args={"session": p.session_id},
            workspace=p.workspace,
            resend=p.resend,
        )
        ended = self._ended.get(p.run_id)
        if ended is not None and p.resumed and p.run_id not in self.turns:
            # the gateway said it was done, then died before recording the run's end
            session_id, note = ended
            if session_id != p.session_id:
                raise CapabilityDenied(
                    "this run belongs to another session", data={"reason": "wrong_session"}
                )
            self._send(note)
            return AgentStarted(
                run_id=p.run_id, thread=self._thread_file(session_id), attached=True
            )
        turn = self.turns.get(p.run_id)
        if turn is not None:
            if turn.session_id != p.session_id:
                raise CapabilityDenied(
                    "this run belongs to another session", data={"reason": "wrong_session"}
                )
            turn.replay(p.after)
            session = self.sessions.get(p.session_id)
            return AgentStarted(
                run_id=p.run_id, thread=session.thread if session else None, attached=True
            )
        if p.agent not in self.available():
            raise NotFound(
                f"this runner does not host the agent {p.agent!r}", data={"agent": p.agent}
            )
        root = self.workspaces.get(p.workspace)
        if root is None:
            raise PolicyDenied(
                f"workspace {p.workspace!r} is not configured on this runner",
                data={"reason": "unknown_workspace", "workspace": p.workspace},
            )
        if not _SESSION.match(p.session_id):
            raise CapabilityDenied("a session id must be a plain name")
        turn = self._new_turn(p)
        if p.resumed:
            thread = self._thread_file(p.session_id, p.agent)
            turn.end(
                "failed",
                reason="runner_restarted",
                message="the runner restarted during this turn, so it stopped; its work so far "
                f"is in the {p.agent} conversation"
                + (f" {thread}" if thread else "")
                + ", which the next message resumes where the agent can",
            )
            return AgentStarted(run_id=p.run_id, thread=thread, attached=False)
        try:
            session = await self._session(p, root)
            await session.start_turn(turn, p.input)
        except TetherError as exc:
            turn.end("failed", reason=exc.data.get("reason") or "agent_error", message=exc.message)
            return AgentStarted(run_id=p.run_id, thread=None, attached=False)
        shared = p.agent == "codex" and self.config.agents.codex.share_home
        if shared:  # the user's own threads: hold one only while a turn runs
            self._spawn(self._release(turn, session, 0.0), f"agent:{p.run_id}:release")
        else:
            idle = self.config.runner.agent_idle_timeout
            self._spawn(self._release(turn, session, idle), f"agent:{p.run_id}:idle")
        return AgentStarted(
            run_id=p.run_id,
            thread=session.thread,
            attached=False,
            resume=self._resume_command(p.session_id, session.thread, shared)
            if p.agent == "codex"
            else None,
        )

    async def steer(self, p: AgentSteerParams) -> Empty:
        _turn, session = self._running(p.run_id)
        await session.steer(p.text)
        return Empty()

    async def interrupt(self, p: AgentTurnParams) -> Empty:
        turn = self.turns.get(p.run_id)
        if turn is None or turn.ended:
            return Empty()
        session = self.sessions.get(turn.session_id)
        if session is not None:
            with contextlib.suppress(TetherError):
                await session.interrupt()
        self._spawn(self._kill_after_grace(turn), f"agent:{p.run_id}:interrupt")
        return Empty()

    def done(self, p: AgentTurnParams) -> Empty:
        turn = self.turns.pop(p.run_id, None)
        if turn is not None:
            last = list(turn.journal.after(turn.journal.last - 1))
            if turn.ended and last:
                self._ended[p.run_id] = (turn.session_id, _decode_note(last[-1][1]))
                while len(self._ended) > ENDED_KEPT:
                    self._ended.popitem(last=False)
            turn.journal.close()
        return Empty()

    def ack(self, p: AgentAckNote) -> None:
        turn = self.turns.get(p.run_id)
        if turn is not None:
            turn.journal.ack(p.n)

    async def stop(self, p: AgentStopParams) -> Empty:
        session = self.sessions.pop(p.session_id, None)
        if session is not None:
            await self._close(session, "stopped")
        return Empty()

    async def aclose(self) -> None:
        """Stop every agent process (the runner is stopping)."""
        for session in list(self.sessions.values()):
            await self._close(session, "the runner stopped")
        self.sessions.clear()
        for task in list(self._side):
            task.cancel()

    # ---- turns and sessions ----------------------------------------------------------

    def _new_turn(self, p: AgentStartParams) -> Turn:
        config = self.config.runner
        journal = TurnJournal(
            self.state_dir / "spool" / f"{p.run_id}.events",
            memory_bytes=config.agent_buffer_memory_bytes,
            disk_bytes=config.agent_buffer_disk_bytes,
        )
        if p.resumed:
            # a turn another runner process numbered: this one's events come after those
            journal.last = journal.acked = p.after
        turn = Turn(
            run_id=p.run_id,
            session_id=p.session_id,
            runner=self.runner_name,
            workspace=p.workspace,
            journal=journal,
            send=self._send,
            mask=self._mask,
        )
        turn.on_overflow = self._overflowed
        self.turns[p.run_id] = turn
        return turn

    def _send(self, note: AgentEventNote) -> bool:
        client = self.link.current
        if client is None or client.closed:
            return False
        client.notify(AGENT_EVENT, note)
        return True

    def _mask(self, payload: Any) -> Any:
        """Secrets never leave the runner: the agent's own keys by value, the rest by
        pattern (``tether.security.redaction``)."""
        return redact_value(self._scrub(payload))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, "[redacted]")
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    def _resume_command(self, session_id: str, thread: str | None, shared: bool) -> str | None:
        """How a person continues the thread in a terminal on this machine."""
        if not thread:
            return None
        if shared:
            return f"codex resume {shlex.quote(thread)}"
        home = self._session_dir(session_id) / "home"
        return f"CODEX_HOME={shlex.quote(str(home))} codex resume {shlex.quote(thread)}"

    def _running(self, run_id: str) -> tuple[Turn, CodexSession | AcpSession]:
        turn = self.turns.get(run_id)
        session = self.sessions.get(turn.session_id) if turn is not None else None
        if turn is None or turn.ended or session is None or not session.alive:
            raise NotFound(f"no turn of run {run_id} is running here", data={"run_id": run_id})
        return turn, session

    def _session_dir(self, session_id: str, agent: str = "codex") -> Path:
        return self.state_dir / agent / session_id

    def _thread_file(self, session_id: str, agent: str = "codex") -> str | None:
        with contextlib.suppress(OSError):
            text = (self._session_dir(session_id, agent) / _THREAD_FILE).read_text().strip()
            return text or None
        return None

    async def _session(self, p: AgentStartParams, root: Path) -> CodexSession | AcpSession:
        lock = self._starting.setdefault(p.session_id, asyncio.Lock())
        async with lock:
            session = self.sessions.get(p.session_id)
            reusable = (
                session is not None
                and session.alive
                and session.agent == p.agent
                and session.cwd == str(root)
            )
            if reusable and session is not None and p.thread in (None, session.thread):
                return session
            if session is not None:
                self.sessions.pop(p.session_id, None)
                await self._close(session, "restarted")
            opened = (
                await self._open(p, root) if p.agent == "codex" else await self._open_acp(p, root)
            )
            self.sessions[p.session_id] = opened
            return opened

    async def _open_acp(self, p: AgentStartParams, root: Path) -> AcpSession:
        from tether.runner.agents.acp import AcpSession  # the SDK loads only when needed

        preset = PRESETS[p.agent]
        cfg = self.config.agents.preset(p.agent)
        program = preset.resolve(cfg)
        if program is None:
            raise AgentNotInstalled(
                f"{preset.label} ({cfg.command or preset.program}) is not installed here"
            )
        state = self._session_dir(p.session_id, p.agent)
        private_dir(state, "agent session directory")
        home = state / "home"
        private_dir(home, "agent home")
        preset.write_home(home)
        env = base_env(list(cfg.env))
        env.update(preset.env(cfg, agent_home(self.sandbox, home)))
        launch = agent_launch(
            self.config,
            argv=preset.argv(program, cfg),
            env=env,
            program=program,
            workspace=root,
            home=home,
            sandbox=self.sandbox,
            protected=self.protected,
            runner_home=self.home,
            mounts=list(cfg.mounts),
        )
        session = AcpSession(
            agent=p.agent,
            label=preset.label,
            session_id=p.session_id,
            argv=launch.argv,
            env=launch.env,
            pass_fds=launch.pass_fds,
            cwd=str(root),
            workspace_root=launch.workspace,
            ask=self._ask,
            tool=self._agent_tool,
            cancel_call=self.cancel_call,
            start_timeout=cfg.start_timeout,
        )
        await self._started(
            session, launch, state, p.thread or self._thread_file(p.session_id, p.agent)
        )
        return session

    async def _open(self, p: AgentStartParams, root: Path) -> CodexSession:
        codex = self.config.agents.codex
        program = resolve_program(codex.command)
        if program is None:
            raise AgentNotInstalled(f"the codex program ({codex.command}) is not installed here")
        state = self._session_dir(p.session_id)
        private_dir(state, "agent session directory")
        shared = codex.share_home
        home = user_codex_home(self.config, self.home) if shared else state / "home"
        if not shared:
            private_dir(home, "agent home")
        launch = codex_launch(
            self.config,
            program=program,
            workspace=root,
            home=home,
            shared_home=shared,
            sandbox=self.sandbox,
            protected=self.protected,
            runner_home=self.home,
        )
        session = CodexSession(
            session_id=p.session_id,
            argv=launch.argv,
            env=launch.env,
            pass_fds=launch.pass_fds,
            cwd=str(root),
            workspace_root=launch.workspace,
            sandbox=self.codex_mode,
            ask=self._ask,
            start_timeout=codex.start_timeout,
        )
        await self._started(session, launch, state, p.thread or self._thread_file(p.session_id))
        return session

    async def _started(
        self, session: CodexSession | AcpSession, launch: Launch, state: Path, thread: str | None
    ) -> None:
        """Open the session's process (resuming ``thread``) and remember its thread."""
        session.on_exit = self._exited
        try:
            thread = await session.open(thread)
        except BaseException:
            await session.aclose(grace=0.5)
            raise
        finally:
            launch.close_fds()
        (state / _THREAD_FILE).write_text(thread + "\n")
        log.info(
            "hosted agent started",
            extra={
                "agent": session.agent,
                "session_id": session.session_id,
                "agent_thread": thread,
                "pid": session.pid,
            },
        )

    def _exited(self, session: AgentProcess) -> None:
        """The process ended on its own: a running turn fails with ``agent_crashed``."""
        if self.sessions.get(session.session_id) is session:
            del self.sessions[session.session_id]
        code = session.proc.returncode if session.proc is not None else None
        tail = redact(self._scrub(session.stderr_text()))[-2000:]
        turn = session.turn
        log.warning(
            "! a hosted agent exited",
            extra={"agent": session.agent, "session_id": session.session_id, "exit_code": code},
        )
        if turn is not None and not turn.ended:
            turn.end(
                "failed",
                reason="agent_crashed",
                message=f"{session.agent} exited unexpectedly (exit status {code})"
                + (f": {tail}" if tail else ""),
            )
        self._spawn(session.aclose(grace=0.5), f"agent:{session.session_id}:reap")

    async def _close(self, session: AgentProcess, why: str) -> None:
        turn = session.turn
        await session.aclose()
        if turn is not None and not turn.ended:
            turn.end("interrupted", reason="interrupted", message=f"the agent was {why}")

    def _overflowed(self, turn: Turn) -> None:
        self._spawn(self.interrupt(AgentTurnParams(run_id=turn.run_id)), "agent:overflow")

    async def _release(self, turn: Turn, session: AgentProcess, idle: float) -> None:
        """Stop the session's process once its turn is over and no other has started for
        ``idle`` seconds. A shared-home session is stopped at once (``idle`` 0), so the
        Codex CLI can continue the thread: Codex lets one process at a time write one."""
        await turn.done.wait()
        if idle:
            await asyncio.sleep(idle)
        if (
            self.sessions.get(session.session_id) is session
            and session.turn is None
            and session.turn_ended_at <= time.monotonic() - idle
        ):
            del self.sessions[session.session_id]
            log.info("stopping an idle agent", extra={"session_id": session.session_id})
            await session.aclose(grace=1.0)

    async def _kill_after_grace(self, turn: Turn) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(turn.done.wait(), self.config.runner.agent_interrupt_grace)
            return
        session = self.sessions.pop(turn.session_id, None)
        if session is not None:
            await session.aclose(grace=0.5)
        turn.end(
            "interrupted",
            reason="interrupted",
            message="the agent did not stop in time; its process was killed",
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    # ---- permission requests -----------------------------------------------------------

    def _request_key(self, turn: Turn, item: str) -> str:
        """The key that makes a request to the gateway one across reconnects (this runner
        process, the run, the item), hashed when it would be too long to send whole."""
        key = f"{self.boot_id}:{turn.run_id}:{item}"
        if len(key) <= 80:
            return key
        return f"{self.boot_id}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def _request(self, turn: Turn, method: Any, params: Any) -> Any | None:
        """Ask the gateway, across reconnects, until it answers (its expiry decides) or the
        turn ends (None). A cancelled caller cancels the request."""
        waiter = asyncio.ensure_future(
            self.link.request(method, params, deadline=time.monotonic() + PERMISSION_WAIT)
        )
        ended = asyncio.ensure_future(turn.done.wait())
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        finally:
            ended.cancel()
        if not waiter.done():
            waiter.cancel()
            return None
        return waiter.result()

    async def _ask(self, turn: Turn, permission: Permission) -> AgentPermissionAnswer:
        """What the gateway decides about what the agent asks (decline when it fails)."""
        params = AgentPermissionParams(
            request_key=self._request_key(turn, permission.call_id),
            run_id=turn.run_id,
            kind=permission.kind,
            call_id=permission.call_id,
            tool=permission.tool,
            args=self._mask(permission.args),
            reason=self._mask(permission.reason)[:4000],
            question=self._mask(permission.question)[:4000],
            choices=[c[:200] for c in permission.choices],
        )
        try:
            answer: AgentPermissionAnswer | None = await self._request(
                turn, AGENT_PERMISSION, params
            )
        except asyncio.CancelledError:
            # the agent withdrew the request: nobody needs to decide it any more
            client = self.link.current
            if client is not None and not client.closed:
                client.notify(
                    AGENT_WITHDRAW,
                    AgentWithdrawNote(
                        run_id=turn.run_id, kind=permission.kind, call_id=permission.call_id
                    ),
                )
            raise
        except RequestTimeout:
            return AgentPermissionAnswer(decision="decline", message="no decision in time")
        except TetherError as exc:
            log.warning("! a permission request failed", extra={"error": exc.message})
            return AgentPermissionAnswer(decision="decline", message=exc.message)
        if answer is None:
            return AgentPermissionAnswer(decision="cancel", message="the turn ended")
        return answer

    async def _agent_tool(
        self, turn: Turn, op: str, tool: str, args: dict[str, Any], covers: str | None
    ) -> AgentToolAnswer:
        """Ask the gateway to run an ACP agent's file or command request as a tool call."""
        params = AgentToolParams(
            request_key=self._request_key(turn, op),
            run_id=turn.run_id,
            call_id=op,
            tool=tool,  # type: ignore[arg-type]
            args=args,
            covers=covers,
        )
        try:
            answer: AgentToolAnswer | None = await self._request(turn, AGENT_TOOL, params)
        except TetherError as exc:
            return AgentToolAnswer(ok=False, code=exc.code, message=exc.message)
        if answer is None:
            return AgentToolAnswer(ok=False, code="cancelled", message="the turn ended")
        return answer
