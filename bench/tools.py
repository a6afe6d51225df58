"""Tool calls through the gateway and idle runners, against baselines measured in the same run.

    python bench/tools.py [--quick] [--out FILE]

1. Round trip: one real runner (``runner.add`` -> ``tether runner enroll`` -> ``tether
   runner``); sequential ``tool.call noop`` from an admin client over the Unix socket.
   Baseline (a): raw aiohttp WebSocket echo RTT + one ``CapabilityIssuer.mint`` + one
   ``CapabilityVerifier.verify``; (b): (a) + a raw Unix-socket echo RTT (the call crosses
   both hops). Target: p50 <= 1.5x (a). Echo baselines and the round trip are pinned
   so that every hop crosses cores (see ``common.pinned``).
2. Throughput: 100 runners (real ``RunnerDaemon``/``CallExecutor``/``CapabilityVerifier``
   hosted in one load process) with 16 ``tool.call noop`` in flight each. Targets:
   >= 8,000 calls/s; gateway CPU per call <= 4x the aiohttp echo's CPU per round trip
   with 64 in flight.
3. Idle runners: 1k, 5k, 10k connected runners heartbeating every 15 s (enrolled through
   ``runner.add`` + ``POST /enroll``, held by one load process), each size measured over
   75 s: 5 heartbeat intervals, long enough to include the gateway's once-a-minute
   ``last_seen`` write per runner. Targets at the largest size: gateway RSS <= 30 KiB per
   runner; gateway CPU < 10 % of one core.

``--quick`` runs 200/500/1000 idle runners with 8 s windows and shorter loads. As context
the run also times, in-process, what one tool.call asks of the ledger. Everything runs on
127.0.0.1; CPU and RSS come from /proc. Results: bench/results/tools.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Gateway,
    cpu_seconds,
    median,
    percentile,
    pinned,
    print_table,
    rss_bytes,
    short_tempdir,
    tether_env,
    verdict,
    write_json,
)
from load import (
    WINDOW,
    Children,
    ask,
    drive,
    echo_baselines,
    enrol_many,
    idle_host,
    ledger_costs,
    raise_nofile,
    runner_host,
    save_identities,
    start_runner,
    timed,
)
from tether.protocol.methods import GATEWAY_INFO, RUNNER_LIST, TOOL_CALL
from tether.protocol.runners import ToolCallParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc

HERE = Path(__file__).resolve().parent
FULL = {
    "rtt_calls": 3000,
    "echo_rtts": 5000,
    "echo_pipelined": 40_000,
    "crypto_ops": 2000,
    "runners": 100,
    "inflight_per_runner": 16,
    "warmup_s": 5.0,
    "load_s": 15.0,
    "idle_sizes": [1000, 5000, 10_000],
    "idle_windows_s": [75.0, 75.0, 75.0],
}
QUICK = {
    **FULL,
    "rtt_calls": 500,
    "echo_rtts": 1000,
    "echo_pipelined": 10_000,
    "crypto_ops": 500,
    "warmup_s": 1.5,
    "load_s": 4.0,
    "idle_sizes": [200, 500, 1000],
    "idle_windows_s": [8.0, 8.0, 8.0],
}


# ---- baselines ----------------------------------------------------------------------


def crypto_costs(n: int) -> dict[str, float]:
    """Per-op time of one CapabilityIssuer.mint and one CapabilityVerifier.verify, in-process."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tether.security.capability import CapabilityIssuer, CapabilityVerifier

    issuer = CapabilityIssuer(Ed25519PrivateKey.generate())
    verifier = CapabilityVerifier(issuer.public_pem, "rnr_bench")
    args = {"echo": ""}
    mints, verifies = [], []
    for i in range(n):
        t = time.perf_counter_ns()
        token, _ = issuer.mint(
            runner_id="rnr_bench", call_id=f"call_{i}", tool="noop", args=args, workspace="app"
        )
        mints.append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        verifier.verify(token, call_id=f"call_{i}", tool="noop", args=args, workspace="app")
        verifies.append((time.perf_counter_ns() - t) / 1000)
    return {
        "mint_us": median(mints),
        "mint_p99_us": percentile(mints, 99),
        "verify_us": median(verifies),
        "verify_p99_us": percentile(verifies, 99),
        "token_bytes": len(token),
    }


# ---- 1. round trip through one real runner ------------------------------------------


async def wait_online(admin: RpcClient, names: set[str], timeout: float) -> None:
    """Poll ``runner.list`` until every runner in ``names`` is online (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = await admin.call(RUNNER_LIST, Empty(), timeout=30)
        if names <= {r.name for r in listed.runners if r.online}:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"runners not online after {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def tool_call_rtt(gw: Gateway, home: Path, kids: Children, n: int) -> dict[str, Any]:
    """Enrol and start one real runner daemon, then time ``n`` sequential tool.call noop."""
    rhome, workspace = home / "runner", home / "workspace"
    workspace.mkdir()
    env = tether_env(rhome)
    async with await connect_ipc(gw.info["socket"]) as admin:
        daemon = await start_runner(admin, kids, gw.info["url"], "rtt", workspace, env)
        t0 = time.perf_counter()
        await wait_online(admin, {"rtt"}, 60)
        online_s = time.perf_counter() - t0
        params = ToolCallParams(runner="rtt", tool="noop", args={"echo": ""})

        async def one() -> None:
            await admin.call(TOOL_CALL, params, timeout=30)

        # every hop crosses cores: admin client and runner on one CPU, gateway on the other
        with pinned([os.getpid(), daemon.pid], [gw.pid]) as pinning:
            rtts = [await timed(one) for _ in range(n + 200)][200:]
        await kids.stop(daemon)
    return {
        "calls": n,
        "p50_us": percentile(rtts, 50),
        "p99_us": percentile(rtts, 99),
        "first_half_p50_us": percentile(rtts[: n // 2], 50),
        "second_half_p50_us": percentile(rtts[n // 2 :], 50),
        "runner_online_s": online_s,
        "pinning": pinning,
    }


# ---- 2. throughput: many runners, many calls in flight -----------------------------


async def throughput(gw: Gateway, home: Path, kids: Children, p: dict[str, Any]) -> dict[str, Any]:
    """Enrol ``p["runners"]`` runners, host them in one load process, drive tool calls."""
    names = [f"h{i:03d}" for i in range(p["runners"])]
    workspace = home / "workspace"
    t0 = time.perf_counter()
    ids = await enrol_many(gw.info["socket"], gw.info["url"], names, workspace=str(workspace))
    enrol_s = time.perf_counter() - t0
    spec = save_identities(home / "host.json", ids)
    host = await kids.start(
        sys.executable, str(HERE / "tools.py"), "--runner-host", str(spec), stdin=True
    )
    ready = await ask(host, None, 150)
    async with await connect_ipc(gw.info["socket"]) as admin:
        await wait_online(admin, set(names), 60)
    pids = {"gateway": gw.pid, "runner_host": host.pid, "load_driver": os.getpid()}
    socket, per_runner = gw.info["socket"], p["inflight_per_runner"]
    result = await drive(socket, names, per_runner, p["warmup_s"], p["load_s"], pids)
    await kids.stop(host)
    return {**result, "runners": len(names), "enrol_s": enrol_s, "host_ready_s": ready["seconds"]}


# ---- 3. idle runners ----------------------------------------------------------------


async def gateway_ws_connections(gw: Gateway) -> int:
    async with await connect_ipc(gw.info["socket"]) as admin:
        info = await admin.call(GATEWAY_INFO, Empty(), timeout=30)
    return next(t.connections for t in info.transports if t.name == "ws")


MASS_ENROLMENT = {
    f"TETHER_LIMITS__ENROLL_{key}": "100000"
    for key in ("RATE", "BURST", "TOTAL_RATE", "TOTAL_BURST")
}
"""Enrolment is rate-limited per source and in total; these benches enrol on purpose."""


async def idle(home: Path, kids: Children, p: dict[str, Any], nofile: int) -> dict[str, Any]:
    """Enrol the largest size, restart the gateway, then connect sizes in turn and measure."""
    sizes = [n for n in p["idle_sizes"] if n + 512 <= nofile]
    skipped = [n for n in p["idle_sizes"] if n not in sizes]
    windows = p["idle_windows_s"][: len(sizes)]
    if not sizes:
        return {"skipped": skipped, "rows": []}
    names = [f"i{i:05d}" for i in range(max(sizes))]
    gw = Gateway(home, **MASS_ENROLMENT)
    try:
        t0 = time.perf_counter()
        ids = await enrol_many(gw.info["socket"], gw.info["url"], names, concurrency=32)
        enrol_s = time.perf_counter() - t0
    finally:
        gw.close()
    # a fresh gateway, so RSS growth is the connections, not the enrolment's leftovers
    gw = Gateway(home, TETHER_LIMITS__MAX_WS_CONNECTIONS=str(max(sizes) + 1000))
    rows = []
    try:
        url = gw.info["url"]  # a new port: point the identities at it
        ids = [msgspec.structs.replace(i, gateway_url=url) for i in ids]
        spec = save_identities(home / "idle.json", ids)
        await gateway_ws_connections(gw)
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(gw.pid)
        cpu0, t0 = cpu_seconds(gw.pid), time.perf_counter()
        await asyncio.sleep(min(10.0, windows[0]))
        empty_cores = (cpu_seconds(gw.pid) - cpu0) / (time.perf_counter() - t0)
        host = await kids.start(
            sys.executable, str(HERE / "tools.py"), "--idle-host", str(spec), stdin=True
        )
        for n, window in zip(sizes, windows, strict=True):
            prev = (rows[-1]["runners"], rows[-1]["rss_bytes"]) if rows else (0, rss0)
            got = await ask(host, str(n), 120 + n * 0.05)
            seen = await gateway_ws_connections(gw)
            await asyncio.sleep(2.0)
            rss = rss_bytes(gw.pid)
            a = await ask(host, "stats", 30)
            c0, h0, t0 = cpu_seconds(gw.pid), cpu_seconds(host.pid), time.perf_counter()
            await asyncio.sleep(window)
            c1, h1, t1 = cpu_seconds(gw.pid), cpu_seconds(host.pid), time.perf_counter()
            b = await ask(host, "stats", 30)
            beats = b["heartbeats"] - a["heartbeats"]
            rows.append(
                {
                    "runners": n,
                    "connected": got["connected"],
                    "connect_errors": got["errors"],
                    "first_error": got["first_error"],
                    "gateway_ws_connections": seen,
                    "connect_s": got["seconds"],
                    "rss_bytes": rss,
                    "rss_per_runner_kib": (rss - rss0) / n / 1024,
                    "rss_marginal_kib": (rss - prev[1]) / (n - prev[0]) / 1024,
                    "window_s": t1 - t0,
                    "heartbeats": beats,
                    "heartbeat_failures": b["failures"] - a["failures"],
                    "gateway_cores": (c1 - c0) / (t1 - t0),
                    "gateway_cpu_us_per_heartbeat": (c1 - c0) / max(1, beats) * 1e6,
                    "host_cores": (h1 - h0) / (t1 - t0),
                }
            )
        await kids.stop(host)
    finally:
        await kids.close()
        gw.close()
    return {
        "sizes": sizes,
        "skipped": skipped,
        "enrol_s": enrol_s,
        "rss0_bytes": rss0,
        "gateway_cores_no_runners": empty_cores,
        "rows": rows,
    }


# ---- the report ---------------------------------------------------------------------


def report(r: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """Print the tables; return the derived numbers, the targets and the notes."""
    base, crypto, rtt, tp, idl = r["baselines"], r["crypto"], r["rtt"], r["throughput"], r["idle"]
    led = r["ledger"]
    a = base["ws_echo_p50_us"] + crypto["mint_us"] + crypto["verify_us"]
    b = a + base["ipc_echo_p50_us"]
    print_table(
        f"Tool-call round trip ({rtt['calls']} sequential tool.call noop: admin -IPC-> gateway "
        "-WS-> runner)",
        ["path", "p50 µs", "p99 µs", "ratio to (a)", "ratio to (b)"],
        [
            [f"raw aiohttp WS echo ({base['frame_bytes']} B)", base["ws_echo_p50_us"],
             base["ws_echo_p99_us"], "", ""],
            ["raw Unix-socket echo", base["ipc_echo_p50_us"], base["ipc_echo_p99_us"], "", ""],
            ["CapabilityIssuer.mint", crypto["mint_us"], crypto["mint_p99_us"], "", ""],
            ["CapabilityVerifier.verify", crypto["verify_us"], crypto["verify_p99_us"], "", ""],
            ["ledger: tool_calls.create + finish (in-proc)", led["create_finish_us"], "", "", ""],
            ["(a) WS echo + mint + verify (baseline)", a, "", 1.0, a / b],
            ["(b) (a) + Unix-socket echo (both hops)", b, "", b / a, 1.0],
            ["tool.call through gateway + real runner", rtt["p50_us"], rtt["p99_us"],
             rtt["p50_us"] / a, rtt["p50_us"] / b],
        ],
    )  # fmt: skip
    echo_cpu = base["ws_echo_server_cpu_us_64"]
    gw_cpu = tp["cpu_us_per_call"]["gateway"]
    print_table(
        f"Throughput ({tp['runners']} runners x {p['inflight_per_runner']} in flight = "
        f"{tp['lanes']} lanes on {tp['admin_connections']} admin IPC connections, "
        f"{tp['seconds']:.1f} s window)",
        ["path", "calls/s", "server CPU µs/call", "CPU ratio", "p50 µs", "p99 µs"],
        [
            [f"raw aiohttp WS echo, {WINDOW} in flight (baseline)",
             base["ws_echo_msgs_per_s_64"], echo_cpu, 1.0, "", ""],
            ["tool.call noop through the gateway", tp["calls_per_s"], gw_cpu,
             gw_cpu / echo_cpu, tp["p50_us"], tp["p99_us"]],
        ],
    )  # fmt: skip
    cores, per = tp["cpu_cores"], tp["cpu_us_per_call"]
    print_table(
        "Where the CPU went during the window (2 cores in all)",
        ["process", "cores", "CPU µs/call"],
        [
            ["gateway (all threads)", cores["gateway"], per["gateway"]],
            ["  event-loop thread", tp["gateway_main_thread_cores"], ""],
            ["  other threads (SQLite writer, readers)", tp["gateway_other_threads_cores"], ""],
            ["runner host (100 real RunnerDaemons)", cores["runner_host"], per["runner_host"]],
            ["load driver (this process)", cores["load_driver"], per["load_driver"]],
        ],
    )
    rows = idl["rows"]
    print_table(
        f"Idle runners (heartbeat every 15 s; enrolled {max(idl['sizes'], default=0)} in "
        f"{idl.get('enrol_s', 0):.1f} s; gateway RSS before any runner "
        f"{idl.get('rss0_bytes', 0) / 2**20:.1f} MiB)",
        ["runners", "connect s", "gateway RSS MiB", "KiB/runner", "marginal KiB", "window s",
         "heartbeats", "gateway % core", "gateway µs/heartbeat", "host % core"],
        [[x["runners"], x["connect_s"], x["rss_bytes"] / 2**20, x["rss_per_runner_kib"],
          x["rss_marginal_kib"], x["window_s"], x["heartbeats"], x["gateway_cores"] * 100,
          x["gateway_cpu_us_per_heartbeat"], x["host_cores"] * 100] for x in rows],
    )  # fmt: skip
    top = rows[-1] if rows else None
    targets = {
        "tool_call_p50_ratio": {"value": rtt["p50_us"] / a, "target": "<= 1.5"},
        "calls_per_s": {"value": tp["calls_per_s"], "target": ">= 8000"},
        "gateway_cpu_per_call_ratio": {"value": gw_cpu / echo_cpu, "target": "<= 4"},
    }
    targets["tool_call_p50_ratio"]["met"] = rtt["p50_us"] / a <= 1.5
    targets["calls_per_s"]["met"] = tp["calls_per_s"] >= 8000
    targets["gateway_cpu_per_call_ratio"]["met"] = gw_cpu / echo_cpu <= 4
    if top is not None:
        n = top["runners"]
        targets[f"rss_per_runner_kib_at_{n}"] = {
            "value": top["rss_per_runner_kib"],
            "target": "<= 30",
            "met": top["rss_per_runner_kib"] <= 30,
        }
        targets[f"heartbeat_core_pct_at_{n}"] = {
            "value": top["gateway_cores"] * 100,
            "target": "< 10",
            "met": top["gateway_cores"] < 0.10,
        }
    print_table(
        "Targets",
        ["measure", "value", "target", "verdict"],
        [[k, v["value"], v["target"], verdict(v["met"])] for k, v in targets.items()],
    )
    notes = _notes(r, gw_cpu)
    print("\nNotes")
    for note in notes:
        print(f"  - {note}")
    derived = {
        "baseline_a_us": a,
        "baseline_b_us": b,
        "rtt_p50_ratio_a": rtt["p50_us"] / a,
        "rtt_p50_ratio_b": rtt["p50_us"] / b,
        "gateway_cpu_ratio": gw_cpu / echo_cpu,
    }
    return {"derived": derived, "targets": targets, "notes": notes}


def _notes(r: dict[str, Any], gw_cpu: float) -> list[str]:
    """Plain-language reading of the numbers: where the time went, who was saturated."""
    crypto, led, rtt, tp, idl = r["crypto"], r["ledger"], r["rtt"], r["throughput"], r["idle"]
    base, cores, cpus = r["baselines"], tp["cpu_cores"], os.cpu_count() or 1
    b = base["ws_echo_p50_us"] + base["ipc_echo_p50_us"] + crypto["mint_us"] + crypto["verify_us"]
    gw_cores = tp["gateway_main_thread_cores"] + tp["gateway_other_threads_cores"]
    crypto_us = crypto["mint_us"] + crypto["verify_us"]
    notes = [
        f"tool.call p50 is {rtt['p50_us'] - b:.0f} µs above baseline (b). For scale, "
        f"in-process on SQLite, recording a call before it is sent and its outcome after "
        f"(create + finish, two awaited commits) takes {led['create_finish_us']:.0f} µs",
        f"gateway CPU per call {gw_cpu:.0f} µs under load, of which one mint is "
        f"{crypto['mint_us']:.0f} µs ({crypto['mint_us'] / gw_cpu:.0%})",
        f"runner host: {cores['runner_host']:.0%} of a core, "
        f"{tp['cpu_us_per_call']['runner_host']:.0f} µs per call (one verify alone is "
        f"{crypto['verify_us']:.0f} µs); load driver: {cores['load_driver']:.0%} of a core; "
        f"the three processes used {sum(cores.values()):.2f} of the machine's {cpus} cores",
        f"mint + verify cost {crypto_us:.0f} µs of CPU per call: with gateway and runners "
        f"sharing this machine's {cpus} cores, signing and verifying alone cap tool calls at "
        f"~{cpus * 1e6 / crypto_us:,.0f}/s",
    ]
    if gw_cores > 0.85:
        notes.append(
            f"the gateway was the bottleneck: its threads used {gw_cores:.2f} of a core "
            "together and share one GIL"
        )
    elif cores["runner_host"] > 0.7:
        notes.append(
            "the runner host was the busiest process: its 100 runners share one process "
            "(one core, one GIL) here, where a real fleet has a machine each"
        )
    elif sum(cores.values()) > 0.9 * cpus:
        notes.append("the machine's cores were saturated: the processes competed for CPU")
    if tp["errors"]:
        said = "; ".join(f"{k}: {v!r}" for k, v in tp["error_examples"].items())
        notes.append(f"errors during the load: {tp['errors']} ({said})")
    notes.append(
        f"RTT p50 over the first half of the calls {rtt['first_half_p50_us']:.0f} µs, over "
        f"the second half {rtt['second_half_p50_us']:.0f} µs (the runner remembers the calls "
        f"it ran); pinning: {rtt['pinning']}"
    )
    if idl["skipped"]:
        notes.append(f"idle sizes skipped (RLIMIT_NOFILE too low): {idl['skipped']}")
    for row in idl["rows"]:
        if row["connect_errors"] or row["gateway_ws_connections"] != row["runners"]:
            notes.append(
                f"{row['runners']} idle runners: {row['connect_errors']} connect errors, "
                f"gateway saw {row['gateway_ws_connections']} ({row['first_error']})"
            )
    notes.append(
        f"idle gateway with no runners: {idl.get('gateway_cores_no_runners', 0):.2%} of a "
        "core. Idle windows include whatever the gateway does per runner at most once a "
        "minute only if they last >= 75 s (the full run's do; --quick's do not)"
    )
    return notes


async def run_all(p: dict[str, Any], nofile: tuple[int, int]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    kids = Children()
    with short_tempdir() as home:
        try:
            print("measuring baselines ...", flush=True)
            r["baselines"] = await echo_baselines(p["echo_rtts"], p["echo_pipelined"], home)
            r["crypto"] = crypto_costs(p["crypto_ops"])
            r["ledger"] = await ledger_costs(p["crypto_ops"] // 4, home)
            for sub in ("gw", "idle"):
                (home / sub).mkdir()
            gw = Gateway(home / "gw", **MASS_ENROLMENT)
            try:
                print("tool-call round trip ...", flush=True)
                r["rtt"] = await tool_call_rtt(gw, home, kids, p["rtt_calls"])
                print("throughput ...", flush=True)
                r["throughput"] = await throughput(gw, home, kids, p)
            finally:
                await kids.close()
                gw.close()
            print("idle runners ...", flush=True)
            r["idle"] = await idle(home / "idle", kids, p, nofile[0])
        finally:
            await kids.close()
    return r


def _source() -> dict[str, Any]:
    """The commit measured and the files under src/ that differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "../src").encode()
    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "--", "../src").splitlines(),
        "diff_sha256": hashlib.sha256(diff).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~1-2 min)")
    parser.add_argument("--out", help="JSON output file (default bench/results/tools.json)")
    parser.add_argument("--runner-host", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--idle-host", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner_host:
        uvloop.run(runner_host(args.runner_host))
        return
    if args.idle_host:
        uvloop.run(idle_host(args.idle_host))
        return

    p = QUICK if args.quick else FULL
    nofile = raise_nofile()
    source = _source()
    start = time.perf_counter()
    results = uvloop.run(run_all(p, nofile))
    summary = report(results, p)
    print(
        f"\n  total time {time.perf_counter() - start:.0f} s; RLIMIT_NOFILE {nofile}; "
        f"src at {source['commit'][:10]} with {len(source['modified'])} modified file(s)"
    )
    if _source() != source:
        print("  WARNING: files under src/ changed during the run")
        source["changed_during_run"] = True
    write_json(
        "tools",
        {
            "quick": args.quick,
            "parameters": p,
            "rlimit_nofile": list(nofile),
            "source": source,
            "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            **results,
            **summary,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
