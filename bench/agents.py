"""Agents through tether vs the same agent driven directly: the openai loop, Codex, and
the ACP agents (Claude Code, Gemini CLI, codex-acp).

    python bench/agents.py [--quick] [--only openai|codex|acp|claude|gemini|codex-acp]
                           [--out FILE]

Both talk to the same scripted model server on 127.0.0.1 (tests/support/model_server.py),
which answers each call after ``--delay`` seconds (default 0.2 s, a fast hosted model's
time to first token; 0 shows tether's bare overhead). A task is ROUNDS model calls that
each ask for one ``noop`` tool call, then a final answer.

- through tether: a real gateway and a real runner; the run's tool calls go through
  policy (reads are allowed), the capability token and the runner; every event is in the
  ledger. Timed from ``run.create`` to the run's end.
- bare: the same calls with the same growing messages from this process with the
  ``openai`` SDK, tool results made up on the spot.

The two are interleaved task by task; the result is the median time per model round and
their ratio (target <= 1.10).

Codex (the real ``codex app-server``, installed by ``make agents``): one turn in which the
model runs a shell command that asks first, then answers.

- through tether: a real gateway and runner; the runner hosts Codex in its sandbox, the
  command's approval goes to the gateway and policy allows it (mode ``auto``), every event
  is in the ledger, the reply is read from Codex's history. One session, so its Codex
  process stays up. Timed from ``run.create`` to the run's end.
- direct: this process drives its own ``codex app-server`` over stdio with the same
  settings (same thread reuse, approval accepted at once, reply read from history).

Interleaved turn by turn; the result is the median turn and the ratio (target <= 1.10).
The ACP agents are measured the same way, one preset at a time (bench/agents_acp.py).
Results: bench/results/agents.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the model server: tests/support
from tests.support.model_server import ModelServer

from agents_acp import run_acp
from common import Gateway, print_table, tether_env, write_json
from load import Children, start_runner
from tether.protocol.methods import RUN_CREATE, RUN_GET, RUNNER_LIST
from tether.protocol.runs import RunCreateParams, RunGetParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc

ACP = ("claude", "gemini", "codex-acp")


def task(rounds: int) -> list[dict[str, Any]]:
    return [{"tool": "noop", "args": {"echo": f"r{i}"}} for i in range(rounds)] + [{"text": "done"}]


async def through_tether(admin: RpcClient, server: ModelServer, rounds: int) -> float:
    server.script = task(rounds)
    start = time.perf_counter()
    created = await admin.call(RUN_CREATE, RunCreateParams(input="go", agent="openai"))
    while True:
        run = await admin.call(RUN_GET, RunGetParams(run_id=created.run.id))
        if run.state in ("succeeded", "failed", "cancelled", "expired"):
            break
        await asyncio.sleep(0.005)
    if run.state != "succeeded":
        raise RuntimeError(f"run {run.id} {run.state}: {run.output}")
    return (time.perf_counter() - start) / (rounds + 1)


async def bare(client: Any, server: ModelServer, rounds: int) -> float:
    server.script = task(rounds)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "go"},
    ]
    tools = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]
    start = time.perf_counter()
    while True:
        stream = await client.chat.completions.create(
            model="scripted", messages=messages, tools=tools, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        calls: dict[int, dict[str, Any]] = {}
        async for chunk in stream:
            for choice in chunk.choices:
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": tc.id, "args": ""})
                    slot["args"] += tc.function.arguments or ""
        if not calls:
            break
        call = calls[0]
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": "noop", "arguments": call["args"]}}
        ]})  # fmt: skip
        result = {"ok": True, "echo": json.loads(call["args"])["echo"]}
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
    return (time.perf_counter() - start) / (rounds + 1)


async def run(tasks: int, rounds: int, delay: float) -> dict[str, Any]:
    import openai

    server = await ModelServer([], delay=delay).start()
    home = Path(tempfile.mkdtemp(prefix="tb-agents-"))
    config = home / "agents.toml"
    config.write_text(f'[agents.openai]\nmodel = "scripted"\nbase_url = "{server.url}"\n')
    gw = Gateway(
        home,
        TETHER_CONFIG=str(config),
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        OPENAI_API_KEY="sk-bench",
    )
    kids = Children()
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=server.url)
    tether_s: list[float] = []
    bare_s: list[float] = []
    try:
        (home / "workspace").mkdir()
        async with await connect_ipc(gw.info["socket"]) as admin:
            await start_runner(
                admin, kids, gw.info["url"], "box", home / "workspace", tether_env(home / "r")
            )
            for _ in range(600):
                listed = await admin.call(RUNNER_LIST, Empty())
                if any(x.name == "box" and x.online for x in listed.runners):
                    break
                await asyncio.sleep(0.1)
            await through_tether(admin, server, 1)  # warm up both paths
            await bare(client, server, 1)
            for _ in range(tasks):
                tether_s.append(await through_tether(admin, server, rounds))
                bare_s.append(await bare(client, server, rounds))
    finally:
        await kids.close()
        gw.close()
        await server.close()
    return {
        "tasks": tasks,
        "rounds": rounds,
        "delay_s": delay,
        "tether_s": tether_s,
        "bare_s": bare_s,
    }


CODEX = (
    Path(__file__).resolve().parent.parent / "tools" / "agents" / "node_modules" / ".bin" / "codex"
)
CODEX_KEY = "sk-bench-codex"


def codex_turn() -> list[dict[str, Any]]:
    command = {"cmd": "echo bench > bench.txt", "sandbox_permissions": "require_escalated",
               "justification": "bench", "login": False}  # fmt: skip
    return [{"tool": "exec_command", "args": command}, {"text": "done"}]


def codex_settings(server: ModelServer) -> dict[str, Any]:
    return {
        "model": "gpt-5.5",
        "model_provider": "scripted",
        "model_providers.scripted": {
            "name": "Scripted", "base_url": server.url, "wire_api": "responses",
            "env_key": "SCRIPTED_API_KEY", "request_max_retries": 0, "stream_max_retries": 0,
        },
    }  # fmt: skip


class DirectCodex:
    """``codex app-server`` driven from this process, as tether's runner drives it."""

    def __init__(self, home: Path, workspace: Path, server: ModelServer, mode: str) -> None:
        self.home, self.workspace, self.server, self.mode = home, workspace, server, mode
        self.done: asyncio.Future[dict[str, Any]] | None = None

    async def start(self) -> None:
        from tether.runner.agents.codex import codex_overrides
        from tether.runner.agents.stdio_rpc import StdioRpc

        argv = [str(CODEX), "app-server", *codex_overrides(codex_settings(self.server))]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "CODEX_HOME": str(self.home),
               "SCRIPTED_API_KEY": CODEX_KEY}  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=env, cwd=self.workspace,
            start_new_session=True, limit=16 * 1024 * 1024,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdin is not None

        def notified(method: str, params: dict[str, Any]) -> None:
            if method == "turn/completed" and self.done is not None and not self.done.done():
                self.done.set_result(params)

        async def asked(method: str, params: dict[str, Any]) -> Any:
            return {"decision": "accept"}

        self.rpc = StdioRpc(self.proc.stdout, self.proc.stdin, on_notify=notified, on_request=asked)
        self.rpc.start()
        await self.rpc.call("initialize", {"clientInfo": {"name": "bench", "version": "0"}})
        self.rpc.notify("initialized")
        started = await self.rpc.call("thread/start", {"cwd": str(self.workspace)})
        self.thread = started["thread"]["id"]

    async def turn(self) -> float:
        self.server.script = codex_turn()
        policies: dict[str, Any] = (
            {"approvalPolicy": "on-request", "sandboxPolicy": {"type": "readOnly"}}
            if self.mode == "codex"
            else {"approvalPolicy": "untrusted",
                  "sandboxPolicy": {"type": "externalSandbox", "networkAccess": "restricted"}}
        )  # fmt: skip
        self.done = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        result = await self.rpc.call(
            "turn/start",
            {"threadId": self.thread, "input": [{"type": "text", "text": "go"}],
             "cwd": str(self.workspace), **policies},
        )  # fmt: skip
        completed = await asyncio.wait_for(self.done, 60)
        assert completed["turn"]["status"] == "completed", completed
        items = await self.rpc.call(
            "thread/items/list",
            {"threadId": self.thread, "turnId": result["turn"]["id"], "sortDirection": "desc",
             "limit": 50},
        )  # fmt: skip
        assert any(e["item"].get("text") == "done" for e in items["data"])
        return time.perf_counter() - start

    async def close(self) -> None:
        await self.rpc.aclose()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()


async def codex_through_tether(
    admin: RpcClient, server: ModelServer, session: str | None
) -> tuple[float, str]:
    server.script = codex_turn()
    start = time.perf_counter()
    created = await admin.call(
        RUN_CREATE, RunCreateParams(input="go", agent="codex", session_id=session, steer=False)
    )
    while True:
        run = await admin.call(RUN_GET, RunGetParams(run_id=created.run.id))
        if run.state in ("succeeded", "failed", "cancelled", "expired"):
            break
        await asyncio.sleep(0.005)
    if run.state != "succeeded" or run.output != "done":
        raise RuntimeError(f"run {run.id} {run.state}: {run.output}")
    return time.perf_counter() - start, run.session_id


async def run_codex(turns: int, delay: float) -> dict[str, Any]:
    from tether.config import Config
    from tether.runner.agents.launch import codex_sandbox_mode
    from tether.runner.sandbox import detect

    if not CODEX.exists():
        raise SystemExit(f"{CODEX} is missing: run `make agents` first")
    server = await ModelServer([], delay=delay).start()
    home = Path(tempfile.mkdtemp(prefix="tb-codex-", dir="/var/tmp"))
    config = home / "codex.toml"
    settings = codex_settings(server)
    provider = settings.pop("model_providers.scripted")
    lines = ["[agents.codex]", f'command = "{CODEX}"', 'env = ["SCRIPTED_API_KEY"]',
             "[agents.codex.settings]", *(f'{k} = "{v}"' for k, v in settings.items()),
             '[agents.codex.settings."model_providers.scripted"]',
             *(f"{k} = {json.dumps(v)}" for k, v in provider.items())]  # fmt: skip
    config.write_text("\n".join(lines) + "\n")
    mode = codex_sandbox_mode(Config(), detect("auto"))
    gw = Gateway(
        home,
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        TETHER_RUNS__DEFAULT_MODE="auto",
    )
    kids = Children()
    (home / "workspace").mkdir()
    (home / "direct-home").mkdir()
    (home / "direct-ws").mkdir()
    direct = DirectCodex(home / "direct-home", home / "direct-ws", server, mode)
    tether_s: list[float] = []
    direct_s: list[float] = []
    try:
        async with await connect_ipc(gw.info["socket"]) as admin:
            env = tether_env(home / "r", TETHER_CONFIG=str(config), SCRIPTED_API_KEY=CODEX_KEY)
            await start_runner(admin, kids, gw.info["url"], "box", home / "workspace", env)
            for _ in range(600):
                listed = await admin.call(RUNNER_LIST, Empty())
                if any(
                    x.name == "box" and x.online and "codex" in x.agents for x in listed.runners
                ):
                    break
                await asyncio.sleep(0.1)
            await direct.start()
            _, session = await codex_through_tether(admin, server, None)  # warm up both
            await direct.turn()
            for _ in range(turns):
                seconds, _ = await codex_through_tether(admin, server, session)
                tether_s.append(seconds)
                direct_s.append(await direct.turn())
    finally:
        await direct.close()
        await kids.close()
        gw.close()
        await server.close()
    return {"turns": turns, "delay_s": delay, "codex_sandbox": mode,
            "tether_s": tether_s, "direct_s": direct_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks")
    parser.add_argument(
        "--delay", type=float, default=0.2, help="the model's seconds to first token"
    )
    parser.add_argument(
        "--only",
        choices=["openai", "codex", "acp", *ACP],
        help="run one of them (acp: the three ACP presets)",
    )
    parser.add_argument("--out", help="JSON output path (default bench/results/agents.json)")
    args = parser.parse_args()
    summary: dict[str, Any] = {}
    if args.only in (None, "openai"):
        tasks, rounds = (6, 4) if args.quick else (30, 6)
        r = asyncio.run(run(tasks, rounds, args.delay))
        t, b = statistics.median(r["tether_s"]), statistics.median(r["bare_s"])
        ratio = t / b
        print_table(
            f"The openai loop per model round (ms; scripted server answering after {args.delay:g} s)",
            ["measure", "through tether", "bare SDK", "ratio", "target", "met"],
            [["median per round", t * 1000, b * 1000, ratio, 1.10, ratio <= 1.10],
             ["tether's overhead per round", (t - b) * 1000, 0.0, "", "", ""]],
        )  # fmt: skip
        summary["openai"] = {**r, "median_tether_ms": t * 1000, "median_bare_ms": b * 1000,
                             "ratio": ratio, "target": 1.10, "met": ratio <= 1.10}  # fmt: skip
    if args.only in (None, "codex"):
        c = asyncio.run(run_codex(5 if args.quick else 20, args.delay))
        t, d = statistics.median(c["tether_s"]), statistics.median(c["direct_s"])
        ratio = t / d
        print_table(
            f"One Codex turn with an approval (ms; codex sandbox: {c['codex_sandbox']}; "
            f"model answering after {args.delay:g} s)",
            ["measure", "through tether", "direct stdio", "ratio", "target", "met"],
            [["median turn", t * 1000, d * 1000, ratio, 1.10, ratio <= 1.10],
             ["tether's overhead per turn", (t - d) * 1000, 0.0, "", "", ""]],
        )  # fmt: skip
        summary["codex"] = {**c, "median_tether_ms": t * 1000, "median_direct_ms": d * 1000,
                            "ratio": ratio, "target": 1.10, "met": ratio <= 1.10}  # fmt: skip
    for agent in ACP:
        if args.only not in (None, "acp", agent):
            continue
        a = asyncio.run(run_acp(agent, 5 if args.quick else 20, args.delay))
        t, d = statistics.median(a["tether_s"]), statistics.median(a["direct_s"])
        ratio = t / d
        box = "in the runner's sandbox" if a["runner_sandbox"] else "runner sandbox off (root)"
        print_table(
            f"One {agent} turn with a permission request (ms; {box}; model answering after "
            f"{args.delay:g} s)",
            ["measure", "through tether", "direct (acp SDK)", "ratio", "target", "met"],
            [["median turn", t * 1000, d * 1000, ratio, 1.10, ratio <= 1.10],
             ["tether's overhead per turn", (t - d) * 1000, 0.0, "", "", ""]],
        )  # fmt: skip
        summary[agent] = {**a, "median_tether_ms": t * 1000, "median_direct_ms": d * 1000,
                          "ratio": ratio, "target": 1.10, "met": ratio <= 1.10}  # fmt: skip
    path = write_json("agents", summary, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
