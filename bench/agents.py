"""The openai agent's loop through tether vs the same loop on the bare SDK, per model round.

    python bench/agents.py [--quick] [--out FILE]

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
their ratio (target <= 1.10). Results: bench/results/agents.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the model server: tests/support
from tests.support.model_server import ModelServer

from common import Gateway, print_table, tether_env, write_json
from load import Children, start_runner
from tether.protocol.methods import RUN_CREATE, RUN_GET, RUNNER_LIST
from tether.protocol.runs import RunCreateParams, RunGetParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks")
    parser.add_argument(
        "--delay", type=float, default=0.2, help="the model's seconds to first token"
    )
    parser.add_argument("--out", help="JSON output path (default bench/results/agents.json)")
    args = parser.parse_args()
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
    summary = {
        **r,
        "median_tether_ms": t * 1000,
        "median_bare_ms": b * 1000,
        "ratio": ratio,
        "target": 1.10,
        "met": ratio <= 1.10,
    }
    path = write_json("agents", summary, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
