"""Ping round trips through the gateway vs raw echo servers measured in the same run.

    python bench/ping.py [--n 5000] [--out FILE]

Rows:
- WebSocket: the gateway's ``ping`` vs a raw aiohttp WebSocket echo (same client, same frame).
- Unix socket: the gateway's ``ping`` vs a raw asyncio-Protocol line echo (same client).
- tether's own client library over both transports (what the CLI and runner see).
- Start-up: ``python -c pass``, ``tether --help``, ``tether ping`` and ``tether runs list``
  (the whole command, a round trip to a running gateway included) in interleaved rounds,
  as ratios to ``tether --help``; and ``tether up`` until ready.

The client runs on one CPU and every server on another (see ``common.pinned``);
sequential RTTs are taken in interleaved rounds over all rows (see ROUNDS), then
throughput row by row.

Targets: WS p50 <= 1.5x the aiohttp echo; IPC p50 <= 2x the Protocol echo;
``tether --help`` <= 0.3 s; ``tether ping`` <= 1.5x ``tether --help``; ``tether up`` ready
<= 2 s. Server CPU per call is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Gateway,
    cpu_seconds,
    median,
    percentile,
    pinned,
    print_table,
    short_tempdir,
    tether_env,
    verdict,
    write_json,
)

HERE = Path(__file__).resolve().parent
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"payload":""}}'
HELLO = b'{"jsonrpc":"2.0","id":0,"method":"hello","params":{"protocol":[1],"role":"admin"}}'
WINDOW = 64


class LineClient(asyncio.Protocol):
    """A minimal Unix-socket client: send a line, await the next line."""

    def __init__(self) -> None:
        self.buf = b""
        self.waiters: list[asyncio.Future[bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.waiters.pop(0).set_result(line)

    def request(self, frame: bytes) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.transport.write(frame + b"\n")
        return fut


ROUNDS = 5
"""Sequential RTTs are taken in this many interleaved rounds over all rows, so a baseline
and the path compared with it see the same machine conditions (scheduling on 2 cores
drifts between modes over seconds)."""


async def sequential(senders: dict[str, Any], n: int) -> dict[str, list[float]]:
    """``n`` sequential RTTs (µs) per row, taken in ROUNDS interleaved rounds after a warm-up."""
    samples: dict[str, list[float]] = {key: [] for key in senders}
    for one, _many in senders.values():
        for _ in range(300):
            await one()
    for r in range(ROUNDS):
        count = n // ROUNDS + (1 if r < n % ROUNDS else 0)
        for key, (one, _many) in senders.items():
            rtts = samples[key]
            for _ in range(count):
                t = time.perf_counter_ns()
                await one()
                rtts.append((time.perf_counter_ns() - t) / 1000)
    return samples


async def throughput(sender: Any, n: int, pid: int) -> dict[str, float]:
    """Calls/s with WINDOW calls in flight, and the server's CPU per call."""
    _one, many = sender
    total = n * 4
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    await many(total)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    return {"calls_per_s": total / elapsed, "server_cpu_us_per_call": cpu / total * 1e6}


async def lanes(send: Any, total: int) -> None:
    """Keep WINDOW calls in flight until ``total`` are done."""
    done = 0

    async def lane() -> None:
        nonlocal done
        while done < total:
            done += 1
            await send()

    await asyncio.gather(*(lane() for _ in range(WINDOW)))


async def ws_sender(url: str, token: str | None, hello: bool) -> tuple[Any, aiohttp.ClientSession]:
    """A raw aiohttp client: one frame out, one frame back (same code for echo and gateway)."""
    http = aiohttp.ClientSession()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await http.ws_connect(url, headers=headers, compress=0, decode_text=False)
    if hello:
        await ws.send_frame(HELLO, aiohttp.WSMsgType.TEXT)
        await ws.receive()

    async def one() -> None:
        await ws.send_frame(PING, aiohttp.WSMsgType.TEXT)
        await ws.receive()

    async def many(total: int) -> None:
        # a writer keeps WINDOW frames in flight; the reader counts replies
        window = asyncio.Semaphore(WINDOW)

        async def writer() -> None:
            for _ in range(total):
                await window.acquire()
                await ws.send_frame(PING, aiohttp.WSMsgType.TEXT)

        task = asyncio.create_task(writer())
        for _ in range(total):
            await ws.receive()
            window.release()
        await task

    return (one, many), http


async def ipc_sender(path: str, hello: bool) -> Any:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_unix_connection(LineClient, path)
    if hello:
        await proto.request(HELLO)

    async def one() -> None:
        await proto.request(PING)

    async def many(total: int) -> None:
        await lanes(one, total)

    return one, many


async def tether_sender(client: Any) -> Any:
    from tether.protocol.methods import PING as PING_METHOD
    from tether.protocol.system import PingParams

    params = PingParams()

    async def one() -> None:
        await client.call(PING_METHOD, params)

    async def many(total: int) -> None:
        await lanes(one, total)

    return one, many


def spawn_baseline(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "baselines.py"), *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def run_rtt(n: int, home: Path) -> dict[str, Any]:
    from tether.transport.client import connect_ipc, connect_ws

    gw = Gateway(home)
    ws_base, port = spawn_baseline("ws")
    sock = str(home / "echo.sock")
    ipc_base, _ = spawn_baseline("ipc", sock)
    results: dict[str, Any] = {}
    try:
        ws_echo, http_echo = await ws_sender(f"http://127.0.0.1:{port}/ws", None, hello=False)
        ws_gw, http_gw = await ws_sender(gw.info["ws"], gw.token, hello=True)
        ws_client = await connect_ws(gw.info["url"], token=gw.token, role="admin")
        ipc_client = await connect_ipc(gw.info["socket"])
        senders = {
            "ws_echo": (ws_echo, ws_base.pid),
            "ws_gateway": (ws_gw, gw.pid),
            "ipc_echo": (await ipc_sender(sock, hello=False), ipc_base.pid),
            "ipc_gateway": (await ipc_sender(gw.info["socket"], hello=True), gw.pid),
            "ws_tether_client": (await tether_sender(ws_client), gw.pid),
            "ipc_tether_client": (await tether_sender(ipc_client), gw.pid),
        }
        with pinned([os.getpid()], [gw.pid, ws_base.pid, ipc_base.pid]) as pinning:
            rtts = await sequential({k: v[0] for k, v in senders.items()}, n)
            for key, (sender, pid) in senders.items():
                results[key] = {
                    "p50_us": percentile(rtts[key], 50),
                    "p99_us": percentile(rtts[key], 99),
                    **await throughput(sender, n, pid),
                }
        results["pinning"] = pinning
        for client in (ws_client, ipc_client):
            await client.aclose()
        for http in (http_echo, http_gw):
            await http.close()
    finally:
        gw.close()
        for proc in (ws_base, ipc_base):
            proc.terminate()
            proc.wait()
    return results


STARTUP = {
    "python_startup_s": ["-c", "pass"],
    "help_s": ["-m", "tether", "--help"],
    "ping_s": ["-m", "tether", "ping"],
    "runs_list_s": ["-m", "tether", "runs", "list"],
}
"""Commands timed from spawn to exit, against one running gateway."""
STARTUP_ROUNDS = 9


def time_startup(repeat: int) -> dict[str, float]:
    """Median wall time of each STARTUP command, taken in ``repeat`` interleaved rounds."""
    with short_tempdir() as home:
        gw = Gateway(home)
        env = tether_env(home)
        try:

            def run(args: list[str]) -> float:
                t = time.perf_counter()
                subprocess.run(
                    [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True
                )
                return time.perf_counter() - t

            for args in STARTUP.values():  # warm the page cache and the bytecode cache
                run(args)
            times: dict[str, list[float]] = {key: [] for key in STARTUP}
            for _ in range(repeat):
                for key, args in STARTUP.items():
                    times[key].append(run(args))
        finally:
            gw.close()
    return {key: median(values) for key, values in times.items()}


def time_up(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with short_tempdir() as home:
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tether", "--json", "up", "--listen", "127.0.0.1:0"],
                env=tether_env(home),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            times.append(time.perf_counter() - t)
            assert json.loads(line)["url"]
            proc.terminate()
            proc.wait(20)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000, help="sequential round trips per row")
    parser.add_argument("--out", help="JSON output file (default bench/results/ping.json)")
    args = parser.parse_args()

    with short_tempdir() as home:
        rtt = uvloop.run(run_rtt(args.n, home))
    startup = time_startup(STARTUP_ROUNDS)
    up_s = time_up(5)

    ws_ratio = rtt["ws_gateway"]["p50_us"] / rtt["ws_echo"]["p50_us"]
    ipc_ratio = rtt["ipc_gateway"]["p50_us"] / rtt["ipc_echo"]["p50_us"]
    rows = []
    for key, label, base in [
        ("ws_echo", "WebSocket: raw aiohttp echo (baseline)", "ws_echo"),
        ("ws_gateway", "WebSocket: gateway ping", "ws_echo"),
        ("ws_tether_client", "WebSocket: gateway ping, tether client", "ws_echo"),
        ("ipc_echo", "Unix socket: raw Protocol echo (baseline)", "ipc_echo"),
        ("ipc_gateway", "Unix socket: gateway ping", "ipc_echo"),
        ("ipc_tether_client", "Unix socket: gateway ping, tether client", "ipc_echo"),
    ]:
        r = rtt[key]
        rows.append(
            [
                label,
                r["p50_us"],
                r["p99_us"],
                r["p50_us"] / rtt[base]["p50_us"],
                r["calls_per_s"],
                r["server_cpu_us_per_call"],
                r["server_cpu_us_per_call"] / rtt[base]["server_cpu_us_per_call"],
            ]
        )
    print_table(
        f"Ping round trips ({args.n} sequential; throughput with {WINDOW} in flight)",
        ["path", "p50 µs", "p99 µs", "p50 ratio", "calls/s", "server CPU µs/call", "CPU ratio"],
        rows,
    )
    help_s = startup["help_s"]
    print_table(
        f"Start-up: the whole command, spawn to exit (median of {STARTUP_ROUNDS} rounds)",
        ["command", "wall ms", "ratio to --help", "ratio to python -c pass"],
        [
            [
                label,
                startup[key] * 1000,
                startup[key] / help_s,
                startup[key] / startup["python_startup_s"],
            ]
            for key, label in (
                ("python_startup_s", "python -c pass (baseline)"),
                ("help_s", "tether --help (baseline)"),
                ("ping_s", "tether ping (Unix socket, one round trip)"),
                ("runs_list_s", "tether runs list"),
            )
        ],
    )
    ping_ratio = startup["ping_s"] / help_s
    targets = {
        "ws_p50_ratio": {"value": ws_ratio, "target": 1.5, "met": ws_ratio <= 1.5},
        "ipc_p50_ratio": {"value": ipc_ratio, "target": 2.0, "met": ipc_ratio <= 2.0},
        "help_s": {"value": help_s, "target": 0.3, "met": help_s <= 0.3},
        "ping_to_help_ratio": {"value": ping_ratio, "target": 1.5, "met": ping_ratio <= 1.5},
        "up_ready_s": {"value": up_s, "target": 2.0, "met": up_s <= 2.0},
    }
    print_table(
        "Targets",
        ["measure", "value", "target", "verdict"],
        [[k, v["value"], f"<= {v['target']}", verdict(v["met"])] for k, v in targets.items()],
    )
    print(
        f"  ({rtt['pinning']}; python -c pass takes {startup['python_startup_s']:.3f} s on this machine)"
    )
    write_json(
        "ping",
        {"rtt": rtt, "startup": {**startup, "up_ready_s": up_s}, "targets": targets},
        args.out,
    )


if __name__ == "__main__":
    main()
