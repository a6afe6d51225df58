"""One ACP agent turn through tether vs the same agent driven directly (bench/agents.py).

Per preset (Claude Code, Gemini CLI, codex-acp; installed by ``make agents``): one turn in
which the model runs a shell command that asks first, then answers.

- through tether: a real gateway and runner; the runner hosts the agent in its sandbox,
  the permission request goes to the gateway and policy allows it (mode ``auto``), every
  event is in the ledger. One session, so the agent process stays up. Timed from
  ``run.create`` to the run's end.
- direct: this process drives its own copy of the agent over stdio with the ``acp`` SDK,
  started the way the preset starts it (same settings and environment, no sandbox),
  one session, the permission allowed at once.

Interleaved turn by turn. codex-acp needs bubblewrap nested in the runner's sandbox; as
root that is not possible, so there its runner runs with ``runner.sandbox = off``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.model_server import ModelServer

from common import Gateway, tether_env
from load import Children, start_runner
from tether.protocol.methods import RUN_CREATE, RUN_GET, RUNNER_LIST
from tether.protocol.runs import RunCreateParams, RunGetParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc

BIN = Path(__file__).resolve().parent.parent / "tools" / "agents" / "node_modules" / ".bin"
PROGRAMS = {"claude": "claude-agent-acp", "gemini": "gemini", "codex-acp": "codex-acp"}
KEY = "sk-bench-acp-key"


def turn_script(agent: str) -> list[dict[str, Any]]:
    if agent == "codex-acp":
        command = {"cmd": "echo bench > bench.txt", "sandbox_permissions": "require_escalated",
                   "justification": "bench", "login": False}  # fmt: skip
        return [{"tool": "exec_command", "args": command}, {"text": "done"}]
    return [{"shell": "echo bench > bench.txt"}, {"text": "done"}]


def preset_config(agent: str, server: ModelServer) -> str:
    lines = [f"[agents.{agent}]", f'command = "{BIN / PROGRAMS[agent]}"', 'key_env = "BENCH_KEY"']
    if agent == "codex-acp":
        lines += [
            f"[agents.{agent}.settings]",
            'model = "gpt-5.5"',
            'model_provider = "scripted"',
            f'[agents.{agent}.settings."model_providers.scripted"]',
            'name = "Scripted"',
            f'base_url = "{server.url}"',
            'wire_api = "responses"',
            'env_key = "BENCH_KEY"',
            "request_max_retries = 0",
            "stream_max_retries = 0",
        ]
    else:
        model = "claude-sonnet-4-5" if agent == "claude" else "gemini-2.5-flash"
        lines += [f'base_url = "{server.root}"', f'model = "{model}"']
    return "\n".join(lines) + "\n"


class DirectAcp:
    """The agent driven from this process with the SDK, started as its preset starts it."""

    def __init__(self, agent: str, config: Any, home: Path, workspace: Path) -> None:
        self.agent, self.config, self.home, self.workspace = agent, config, home, workspace
        self.text: list[str] = []

    async def start(self) -> None:
        from acp import PROTOCOL_VERSION
        from acp.client.connection import ClientSideConnection
        from acp.schema import ClientCapabilities, FileSystemCapabilities

        from tether.runner.agents.launch import base_env
        from tether.runner.agents.presets import PRESETS

        preset = PRESETS[self.agent]
        cfg = self.config.agents.preset(self.agent)
        program = preset.resolve(cfg)
        assert program is not None, f"{self.agent} is not installed: run `make agents`"
        preset.write_home(self.home)
        env = base_env(["BENCH_KEY"])
        env.update(preset.env(cfg, str(self.home)))
        self.proc = await asyncio.create_subprocess_exec(
            *preset.argv(program, cfg), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
            cwd=self.workspace, start_new_session=True, limit=16 * 1024 * 1024,
        )  # fmt: skip
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.conn = ClientSideConnection(_Allow(self), self.proc.stdin, self.proc.stdout)
        await self.conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=False, write_text_file=False),
                terminal=False,
            ),
        )
        opened = await self.conn.new_session(cwd=str(self.workspace), mcp_servers=[])
        self.session = opened.session_id

    async def turn(self, server: ModelServer) -> float:
        from acp import text_block

        server.script = turn_script(self.agent)
        self.text = []
        start = time.perf_counter()
        done = await self.conn.prompt(session_id=self.session, prompt=[text_block("go")])
        assert done.stop_reason == "end_turn", done
        assert "done" in "".join(self.text), self.text
        return time.perf_counter() - start

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), 2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()


class _Allow:
    def __init__(self, direct: DirectAcp) -> None:
        self.direct = direct

    async def request_permission(
        self, session_id: str, tool_call: Any, options: Any, **_: Any
    ) -> Any:
        from acp.schema import AllowedOutcome, RequestPermissionResponse

        once = next(o for o in options if o.kind == "allow_once")
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=once.option_id)
        )

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        if getattr(update, "session_update", "") == "agent_message_chunk":
            self.direct.text.append(getattr(update.content, "text", "") or "")


async def through_tether(
    admin: RpcClient, server: ModelServer, agent: str, session: str | None
) -> tuple[float, str]:
    server.script = turn_script(agent)
    start = time.perf_counter()
    created = await admin.call(
        RUN_CREATE, RunCreateParams(input="go", agent=agent, session_id=session, steer=False)
    )
    while True:
        run = await admin.call(RUN_GET, RunGetParams(run_id=created.run.id))
        if run.state in ("succeeded", "failed", "cancelled", "expired"):
            break
        await asyncio.sleep(0.005)
    if run.state != "succeeded" or "done" not in (run.output or ""):
        raise RuntimeError(f"run {run.id} {run.state}: {run.output}")
    return time.perf_counter() - start, run.session_id


async def run_acp(agent: str, turns: int, delay: float) -> dict[str, Any]:
    from tether.config import load_config

    if not (BIN / PROGRAMS[agent]).exists():
        raise SystemExit(f"{PROGRAMS[agent]} is missing: run `make agents` first")
    server = await ModelServer([], delay=delay).start()
    home = Path(tempfile.mkdtemp(prefix=f"tb-{agent}-", dir="/var/tmp"))
    text = preset_config(agent, server)
    (home / "runner.toml").write_text(text)
    config = load_config(config_file=str(home / "runner.toml"))
    gw = Gateway(
        home,
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        TETHER_RUNS__DEFAULT_MODE="auto",
    )
    kids = Children()
    for name in ("workspace", "direct-home", "direct-ws"):
        (home / name).mkdir()
    direct = DirectAcp(agent, config, home / "direct-home", home / "direct-ws")
    unsandboxed = agent == "codex-acp" and os.geteuid() == 0
    tether_s: list[float] = []
    direct_s: list[float] = []
    try:
        async with await connect_ipc(gw.info["socket"]) as admin:
            extra = {"TETHER_RUNNER__SANDBOX": "off"} if unsandboxed else {}
            env = tether_env(
                home / "r", TETHER_CONFIG=str(home / "runner.toml"), BENCH_KEY=KEY, **extra
            )
            await start_runner(admin, kids, gw.info["url"], "box", home / "workspace", env)
            for _ in range(600):
                listed = await admin.call(RUNNER_LIST, Empty())
                if any(x.name == "box" and x.online and agent in x.agents for x in listed.runners):
                    break
                await asyncio.sleep(0.1)
            os.environ["BENCH_KEY"] = KEY
            await direct.start()
            _, session = await through_tether(admin, server, agent, None)  # warm up both
            await direct.turn(server)
            for _ in range(turns):
                seconds, _ = await through_tether(admin, server, agent, session)
                tether_s.append(seconds)
                direct_s.append(await direct.turn(server))
    finally:
        await direct.close()
        await kids.close()
        gw.close()
        await server.close()
    return {"agent": agent, "turns": turns, "delay_s": delay, "runner_sandbox": not unsandboxed,
            "tether_s": tether_s, "direct_s": direct_s}  # fmt: skip
