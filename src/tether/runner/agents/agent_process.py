"""One session's agent process: started in its own process group, stopped by killing it.

:class:`AgentProcess` is what every hosted agent session shares (Codex app-server, ACP
agents): the process with stdio pipes, the tail of its stderr for a crash report, a
watch that calls ``on_exit`` when it ends on its own, and :meth:`aclose`, which closes
stdin, waits a grace period and then kills the whole process group it created (some
agents ignore stdin EOF, and npm shims leave native children behind). While it lives it
is registered as the runner's own process, so the reaper of a finished shell call's
orphans (:mod:`tether.runner.reaper`) leaves it alone. The subclass
speaks the agent's protocol over ``proc.stdin``/``proc.stdout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from tether.runner import reaper
from tether.runner.agents.turns import Turn

__all__ = ["READER_LIMIT", "STDERR_TAIL", "AgentProcess"]

STDERR_TAIL = 4000
"""Bytes of the agent's stderr kept for a crash report."""
READER_LIMIT = 16 * 1024 * 1024
"""The longest line an agent may send."""


class AgentProcess:
    """See the module docstring."""

    agent = "agent"

    def __init__(
        self,
        *,
        session_id: str,
        argv: list[str],
        env: dict[str, str],
        pass_fds: list[int],
        cwd: str,
        workspace_root: str,
        start_timeout: float,
    ) -> None:
        self.session_id = session_id
        self.argv = argv
        self.env = env
        self.pass_fds = pass_fds
        self.cwd = cwd
        self.workspace_root = workspace_root
        """The workspace as the agent sees it (its commands' cwd)."""
        self.start_timeout = start_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.thread: str | None = None
        """The agent's own id for the conversation (a Codex thread, an ACP session)."""
        self.turn: Turn | None = None
        self.stderr_tail = bytearray()
        self._pumps: list[asyncio.Task[None]] = []
        self.exited = asyncio.Event()
        self.turn_ended_at = 0.0
        """When its last turn ended (monotonic); 0 while one runs."""
        self.on_exit: Callable[[Any], None] | None = None
        self._own = contextlib.ExitStack()
        """Keeps the process registered as the runner's own while it lives: the reaper
        that kills a finished shell call's orphans must never take it for one."""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.exited.is_set()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def spawn(self) -> asyncio.subprocess.Process:
        """Start the program (new process group, stdio piped) and watch it."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            pass_fds=self.pass_fds,
            limit=READER_LIMIT,
        )
        self._own.enter_context(reaper.spawned(self.proc.pid))
        loop = asyncio.get_running_loop()
        self._pumps = [
            loop.create_task(self._stderr(), name=f"{self.agent}:stderr"),
            loop.create_task(self._watch(), name=f"{self.agent}:exit"),
        ]
        return self.proc

    async def _stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr_tail += chunk
            del self.stderr_tail[:-STDERR_TAIL]

    async def _watch(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        self._own.close()
        await self._transport_closed()
        self.exited.set()
        if self.on_exit is not None:
            self.on_exit(self)

    async def _transport_closed(self) -> None:
        """Wait until everything the agent sent before it exited has been read."""

    async def _close_transport(self) -> None:
        """Stop speaking to the agent (its stdin is closed)."""

    def stderr_text(self) -> str:
        return self.stderr_tail.decode("utf-8", "replace").strip()

    def ended_turn(self, turn: Turn) -> None:
        """Forget ``turn`` as the running one (it ended)."""
        if self.turn is turn:
            self.turn = None
            self.turn_ended_at = time.monotonic()

    async def aclose(self, grace: float = 3.0) -> None:
        """Close stdin, wait up to ``grace``, then kill the process group we created."""
        from tether.runner.process import kill_group

        proc = self.proc
        if proc is None:
            return
        self.on_exit = None
        await self._close_transport()
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        await kill_group(proc.pid, grace=1.0)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        self._own.close()
        for pump in self._pumps:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
