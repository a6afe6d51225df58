"""Policy decisions and the approval path, against baselines measured in the same run.

    python bench/policy.py [--quick] [--out FILE]

1. Decision time with 200 config rules (and the default deny list), in-process:
   - a plain call (``read_file`` on a path): target p50 <= 20 µs;
   - a shell command parsed into its simple commands and decided (every command line
     different, so nothing is cached): target p50 <= 100 µs.
   Baseline: hashing the call's canonical arguments (``args_digest``), which every call
   pays anyway before its token is minted.
2. Approve -> ``tool.execute`` sent to the runner: a gateway in this process with a real
   ``tether runner``; each run's ``noop`` call asks (session mode ``ask``); the time from
   sending ``request.resolve`` to the gateway handing ``tool.execute`` to its runner link
   is read on one clock. Target p50 <= 2 ms. Baseline: the same hand-off for a direct
   ``tool.call`` that policy allows (request sent -> ``tool.execute`` handed over).

Results: bench/results/policy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, print_table, tether_env, write_json
from load import Children, start_runner
from tether.app import Gateway
from tether.config import PolicyConfig, RuleSpec, load_config
from tether.policy import Policy, describe_call
from tether.protocol.access import RequestListParams, RequestResolveParams
from tether.protocol.methods import (
    REQUEST_LIST,
    REQUEST_RESOLVE,
    RUN_CREATE,
    RUN_GET,
    RUNNER_LIST,
    SESSION_UPDATE,
    TOOL_CALL,
    TOOL_EXECUTE,
)
from tether.protocol.runners import ToolCallParams
from tether.protocol.runs import RunCreateParams, RunGetParams, SessionUpdateParams
from tether.protocol.system import Empty
from tether.security.capability import args_digest
from tether.transport.client import RpcClient, connect_ipc

TOOLS = ["read_file", "write_file", "edit_file", "list_dir", "glob", "grep", "shell", "noop"]
RISKS = {"write_file": "write", "edit_file": "write", "shell": "exec"}
PATHS = {"shell": ["cwd"], "noop": []}
WORDS = ["git", "make", "pytest", "ls", "cat", "grep", "npm", "cargo", "python", "docker"]


def two_hundred_rules(rng: random.Random) -> list[RuleSpec]:
    """A realistic mix: tool rules, path rules per workspace, command rules for shell."""
    rules = []
    for i in range(200):
        kind = i % 4
        decision = rng.choice(["allow", "ask", "deny"])
        if kind == 0:
            rules.append(
                RuleSpec(decision=decision, tool=rng.choice(TOOLS), workspace=f"ws{i % 7}")
            )
        elif kind == 1:
            rules.append(RuleSpec(decision=decision, risk="write", paths=[f"dir{i}/**", f"*.{i}"]))
        elif kind == 2:
            cmd = f"{rng.choice(WORDS)} sub{i}*"
            rules.append(RuleSpec(decision=decision, tool="shell", command=cmd))
        else:
            rules.append(RuleSpec(decision=decision, tool=f"{rng.choice(TOOLS)[:3]}*", risk="read"))
    return rules


def _time_each(fn: Any, items: list[Any]) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def decisions(n: int, rng: random.Random) -> dict[str, Any]:
    policy = Policy(PolicyConfig(rules=two_hundred_rules(rng)))

    def plain(args: dict[str, Any]) -> None:
        call = describe_call("read_file", args, workspace="app", risk="read", path_params=["path"])
        policy.decide(call, "auto-read")

    def shell(args: dict[str, Any]) -> None:
        call = describe_call("shell", args, workspace="app", risk="exec", path_params=["cwd"])
        policy.decide(call, "auto-read")

    paths = [{"path": f"src/mod{i}/file{i}.py"} for i in range(n)]
    commands = [
        {"command": f"cd src{i} && {rng.choice(WORDS)} run --x={i} | grep -v warn{i} > out{i}.log"}
        for i in range(n)
    ]
    for args in paths[:200] + commands[:200]:  # warm up
        plain(args)
        shell(args)
    return {
        "rules": len(policy.rules),
        "deny_list": len(policy.guards),
        "plain_us": _time_each(plain, paths),
        "plain_digest_us": _time_each(args_digest, paths),
        "shell_us": _time_each(shell, commands),
        "shell_digest_us": _time_each(args_digest, commands),
    }


async def approval_path(n: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="tb-policy-"))
    env = tether_env(home)
    config = load_config(
        env={**env, "TETHER_GATEWAY__LISTEN": "127.0.0.1:0", "TETHER_LOG_LEVEL": "warning"}
    )
    kids = Children()
    sent: dict[str, float] = {}
    handed = asyncio.Event()
    async with Gateway(config) as gw:
        link = gw.parts.link
        original = link.call

        async def watched(runner_id: str, method: Any, params: Any, **kw: Any) -> Any:
            if method is TOOL_EXECUTE:
                sent[params.call_id] = time.perf_counter()
                sent["last"] = sent[params.call_id]
                handed.set()
            return await original(runner_id, method, params, **kw)

        link.call = watched  # type: ignore[method-assign]
        workspace = home / "workspace"
        workspace.mkdir()
        try:
            async with await connect_ipc(str(gw.server.socket_path)) as admin:
                await start_runner(
                    admin, kids, gw.server.url, "box", workspace, tether_env(home / "r")
                )
                await _online(admin, "box")
                direct = [await _direct(admin, sent) for _ in range(n + 20)][20:]
                first = await admin.call(RUN_CREATE, RunCreateParams(input="say hi"))
                session = first.run.session_id
                await admin.call(
                    SESSION_UPDATE,
                    SessionUpdateParams(
                        session_id=session, runner="box", workspace="app", mode="ask"
                    ),
                )
                await _until_done(admin, first.run.id)
                approve = [await _approved(admin, session, sent, handed, i) for i in range(n + 10)][
                    10:
                ]
        finally:
            await kids.close()
    return {"runs": n, "approve_us": approve, "direct_us": direct}


async def _online(admin: RpcClient, name: str) -> None:
    for _ in range(600):
        listed = await admin.call(RUNNER_LIST, Empty())
        if any(r.name == name and r.online for r in listed.runners):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the runner did not come online")


async def _direct(admin: RpcClient, sent: dict[str, float]) -> float:
    sent.pop("last", None)
    start = time.perf_counter()
    await admin.call(TOOL_CALL, ToolCallParams(runner="box", tool="noop", args={"echo": ""}))
    return (sent["last"] - start) * 1e6


async def _approved(
    admin: RpcClient, session: str, sent: dict[str, float], handed: asyncio.Event, i: int
) -> float:
    script = f'tool box noop \'{{"echo": "{i}"}}\''
    created = await admin.call(RUN_CREATE, RunCreateParams(input=script, session_id=session))
    for _ in range(2000):
        found = await admin.call(REQUEST_LIST, RequestListParams(run_id=created.run.id))
        if found.requests:
            break
        await asyncio.sleep(0.002)
    else:
        run = await admin.call(RUN_GET, RunGetParams(run_id=created.run.id))
        raise TimeoutError(f"run {i} asked for nothing: {run.state} {run.reason} {run.output}")
    request = found.requests[0]
    await asyncio.sleep(0.01)  # the run is parked on its request
    handed.clear()
    start = time.perf_counter()
    await admin.call(
        REQUEST_RESOLVE, RequestResolveParams(request=request.id, decision="allow_once")
    )
    await asyncio.wait_for(handed.wait(), 30)  # nothing else runs on this loop meanwhile
    await _until_done(admin, created.run.id)
    assert request.call_id is not None
    return (sent[request.call_id] - start) * 1e6


async def _until_done(admin: RpcClient, run_id: str) -> None:
    for _ in range(5000):
        run = await admin.call(RUN_GET, RunGetParams(run_id=run_id))
        if run.state in ("succeeded", "failed", "cancelled", "expired"):
            if run.state != "succeeded":
                raise RuntimeError(f"run {run_id} {run.state}: {run.output}")
            return
        await asyncio.sleep(0.002)
    raise TimeoutError(f"run {run_id} did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--out", help="JSON output path (default bench/results/policy.json)")
    args = parser.parse_args()
    n_decide, n_runs = (2000, 40) if args.quick else (20000, 200)
    d = decisions(n_decide, random.Random(11))
    a = asyncio.run(approval_path(n_runs))
    p50 = {k: percentile(v, 50) for k, v in {**d, **a}.items() if isinstance(v, list)}
    p99 = {k: percentile(v, 99) for k, v in {**d, **a}.items() if isinstance(v, list)}
    rows = [
        ["plain call, 200 rules", p50["plain_us"], p99["plain_us"], p50["plain_digest_us"],
         p50["plain_us"] / p50["plain_digest_us"], 20.0, p50["plain_us"] <= 20.0],
        ["parsed shell command, 200 rules", p50["shell_us"], p99["shell_us"], p50["shell_digest_us"],
         p50["shell_us"] / p50["shell_digest_us"], 100.0, p50["shell_us"] <= 100.0],
        ["approve -> tool.execute sent", p50["approve_us"], p99["approve_us"], p50["direct_us"],
         p50["approve_us"] / p50["direct_us"], 2000.0, p50["approve_us"] <= 2000.0],
    ]  # fmt: skip
    print_table(
        "Policy (µs; baseline: args_digest of the same call / a direct allowed call's hand-off)",
        ["measure", "p50", "p99", "baseline p50", "ratio", "target p50", "met"],
        rows,
    )
    summary = {
        "rules": d["rules"],
        "deny_list": d["deny_list"],
        "p50_us": p50,
        "p99_us": p99,
        "targets_us": {"plain": 20.0, "shell": 100.0, "approve_to_execute": 2000.0},
        "met": {r[0]: r[-1] for r in rows},
        "samples": {"decisions": n_decide, "runs": n_runs},
    }
    path = write_json("policy", summary, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
