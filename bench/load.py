"""Load helpers for bench/tools.py: enrolment, child processes, load generators, load hosts.

- :func:`enrol_many` enrols runners through the real path (``runner.add`` over the
  gateway's Unix socket, then ``POST /enroll``), concurrently and bounded.
- :func:`runner_host` (``python bench/tools.py --runner-host SPEC``) hosts many runners
  in one process, each built from the real classes: ``RunnerDaemon`` + ``CallExecutor`` +
  ``CapabilityVerifier`` + the ``off`` sandbox (real token checks and policy per call).
- :func:`idle_host` (``python bench/tools.py --idle-host SPEC``) holds idle runner
  connections: ``connect_ws`` as ``runner``, ``runner.register`` with the real tool list,
  then ``runner.heartbeat`` every interval. It reads target counts on stdin.
- :func:`echo_baselines` times the raw echo servers of bench/baselines.py;
  :func:`ledger_costs` times, in-process, what one ``tool.call`` asks of the ledger;
  :func:`drive` keeps many ``tool.call`` in flight from admin clients on the Unix socket.

Both hosts print one JSON line per answer on stdout and stop at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import random
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from common import cpu_seconds, median, percentile, pinned
from ping import LineClient, spawn_baseline
from tether import __version__
from tether.config import LedgerConfig, RunnerConfig
from tether.errors import TetherError
from tether.protocol.methods import RUNNER_ADD, RUNNER_HEARTBEAT, RUNNER_REGISTER, TOOL_CALL
from tether.protocol.runners import (
    Enrolled,
    EnrolRequest,
    HeartbeatParams,
    RunnerAddParams,
    RunnerRegisterParams,
    ToolCallParams,
    ToolInfo,
)
from tether.runner.identity import RunnerIdentity
from tether.transport.client import RpcClient, connect_ipc, connect_ws

HERE = Path(__file__).resolve().parent
_HEAD = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"payload":"'
FRAME = _HEAD + b"x" * (300 - len(_HEAD) - 3) + b'"}}'
"""A ~300-byte JSON-RPC frame for the echo baselines."""
WINDOW = 64
"""Frames in flight for the pipelined echo baseline."""
PER_CONN = 200
"""tool.call lanes per admin connection (the gateway allows 256 in flight on one)."""


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); return both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def thread_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the main thread, CPU seconds of all other threads) from /proc."""
    main = other = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(task.name) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


# ---- child processes ----------------------------------------------------------------


class Children:
    """Asyncio child processes that are always stopped: SIGTERM, then SIGKILL."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(
        self, *args: str, env: dict[str, str] | None = None, stdin: bool = False
    ) -> Any:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        self.procs.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, grace: float = 15.0) -> None:
        """Close its stdin (the hosts' stop signal), then terminate; kill after ``grace``."""
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def close(self) -> None:
        for proc in reversed(self.procs):
            await self.stop(proc)
        self.procs.clear()


async def start_runner(
    admin: RpcClient, kids: Children, url: str, name: str, workspace: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    """``runner.add`` NAME, ``tether runner enroll`` with WORKSPACE as ``app``, then the
    ``tether runner`` daemon (stopped with ``kids``)."""
    tether = [sys.executable, "-m", "tether"]
    added = await admin.call(RUNNER_ADD, RunnerAddParams(name=name), timeout=30)
    enrol = await kids.start(
        *tether, "--json", "runner", "enroll", "--gateway", url,
        "--code", added.code, "--workspace", f"app={workspace}", env=env,
    )  # fmt: skip
    await asyncio.wait_for(enrol.wait(), 60)
    if enrol.returncode:
        raise RuntimeError(f"tether runner enroll failed with code {enrol.returncode}")
    proc: asyncio.subprocess.Process = await kids.start(
        *tether, "--log-level", "warning", "runner", env=env
    )
    return proc


async def ask(proc: asyncio.subprocess.Process, line: str | None, timeout: float) -> dict[str, Any]:
    """Send a line to a host (if any) and read its JSON answer, waiting at most ``timeout``."""
    assert proc.stdout is not None
    if line is not None:
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not raw:
        raise RuntimeError(f"load host {proc.pid} exited (code {await proc.wait()})")
    answer: dict[str, Any] = json.loads(raw)
    return answer


# ---- enrolment ----------------------------------------------------------------------


async def enrol_many(
    socket_path: str,
    gateway_url: str,
    names: list[str],
    *,
    workspace: str = "",
    concurrency: int = 32,
) -> list[RunnerIdentity]:
    """Enrol ``names`` through the real path: ``runner.add`` (IPC) then ``POST /enroll``."""
    admins = [await connect_ipc(socket_path) for _ in range(min(4, concurrency))]
    slots = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

            async def one(i: int, name: str) -> RunnerIdentity:
                async with slots:
                    added = await admins[i % len(admins)].call(
                        RUNNER_ADD, RunnerAddParams(name=name), timeout=60
                    )
                    body = msgspec.json.encode(EnrolRequest(code=added.code, version=__version__))
                    async with http.post(
                        f"{gateway_url}/enroll", data=body, headers=headers
                    ) as resp:
                        raw = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"enrolment of {name} failed: HTTP {resp.status}")
                got = msgspec.json.decode(raw, type=Enrolled)
                return RunnerIdentity(
                    gateway_url=gateway_url,
                    runner_id=got.runner_id,
                    name=got.name,
                    credential=got.credential,
                    gateway_public_key=got.gateway_public_key,
                    workspaces={"app": workspace} if workspace else {},
                )

            return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(names))))
    finally:
        for admin in admins:
            await admin.aclose()


def save_identities(path: Path, identities: list[RunnerIdentity]) -> Path:
    """Write the identities (credentials!) for a load host, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.encode(identities))
    return path


def _load(path: str) -> list[RunnerIdentity]:
    return msgspec.json.decode(Path(path).read_bytes(), type=list[RunnerIdentity])


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _quiet() -> None:
    raise_nofile()
    logging.basicConfig(level=logging.ERROR, format="load host: %(name)s: %(message)s")


# ---- measurements ---------------------------------------------------------------


async def echo_baselines(n: int, pipelined: int, home: Path) -> dict[str, Any]:
    """Raw echo servers (bench/baselines.py): RTTs, and CPU per round trip with 64 in flight."""
    ws_proc, port = spawn_baseline("ws")
    sock = str(home / "echo.sock")
    ipc_proc, _ = spawn_baseline("ipc", sock)
    try:
        with pinned([os.getpid()], [ws_proc.pid, ipc_proc.pid]) as pinning:
            measured = await _echo_rtts(port, sock, n, pipelined, ws_proc.pid)
    finally:
        for proc in (ws_proc, ipc_proc):
            proc.terminate()
            proc.wait(10)
    return {**measured, "pinning": pinning}


async def _echo_rtts(port: str, sock: str, n: int, pipelined: int, ws_pid: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws", compress=0, decode_text=False)

        async def ws_one() -> None:
            await ws.send_frame(FRAME, aiohttp.WSMsgType.TEXT)
            await ws.receive()

        ws_rtts = [await timed(ws_one) for _ in range(n + 300)][300:]
        window = asyncio.Semaphore(WINDOW)

        async def writer() -> None:
            for _ in range(pipelined):
                await window.acquire()
                await ws.send_frame(FRAME, aiohttp.WSMsgType.TEXT)

        cpu0, t0 = cpu_seconds(ws_pid), time.perf_counter()
        task = asyncio.create_task(writer())
        for _ in range(pipelined):
            await ws.receive()
            window.release()
        await task
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(ws_pid) - cpu0
        await ws.close()
    _, proto = await asyncio.get_running_loop().create_unix_connection(LineClient, sock)

    async def ipc_one() -> None:
        await proto.request(FRAME)

    ipc_rtts = [await timed(ipc_one) for _ in range(n + 300)][300:]
    proto.transport.close()
    return {
        "frame_bytes": len(FRAME),
        "ws_echo_p50_us": percentile(ws_rtts, 50),
        "ws_echo_p99_us": percentile(ws_rtts, 99),
        "ws_echo_msgs_per_s_64": pipelined / elapsed,
        "ws_echo_server_cpu_us_64": cpu / pipelined * 1e6,
        "ipc_echo_p50_us": percentile(ipc_rtts, 50),
        "ipc_echo_p99_us": percentile(ipc_rtts, 99),
    }


async def timed(fn: Any) -> float:
    t = time.perf_counter_ns()
    await fn()
    return (time.perf_counter_ns() - t) / 1000


async def ledger_costs(n: int, home: Path) -> dict[str, float]:
    """What one tool.call asks of the ledger, in-process on SQLite: recording the call
    before it is sent and its outcome after (``tool_calls.create`` + ``finish``)."""
    from tether.ledger import Ledger

    ledger = await Ledger.open(LedgerConfig(), home / "ledger")
    try:
        rec = await ledger.runners.add("bench", code_hash="0" * 64, expires_at=time.time() + 600)
        writes = []
        for i in range(n):
            t = time.perf_counter_ns()
            await ledger.tool_calls.create(
                call_id=f"call_{i}", run_id=None, runner_id=rec.id, tool="noop", args="{}",
                args_sha256="0" * 64, workspace="app", decision="allow", token_id=f"t{i}",
                requested_by="admin",
            )  # fmt: skip
            await ledger.tool_calls.finish(f"call_{i}", state="succeeded", result="{}")
            writes.append((time.perf_counter_ns() - t) / 1000)
        return {"create_finish_us": median(writes)}
    finally:
        await ledger.aclose()


async def drive(
    socket: str,
    names: list[str],
    per_runner: int,
    warmup: float,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """Keep ``per_runner`` tool.call noop in flight per runner; measure one steady window."""
    lanes = len(names) * per_runner
    clients = [await connect_ipc(socket) for _ in range(math.ceil(lanes / PER_CONN))]
    state = {"stop": False, "measuring": False, "done": 0}
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    latencies: list[float] = []

    async def lane(j: int) -> None:
        client = clients[j % len(clients)]
        params = ToolCallParams(runner=names[j % len(names)], tool="noop", args={"echo": ""})
        while not state["stop"]:
            t = time.perf_counter_ns()
            try:
                await client.call(TOOL_CALL, params, timeout=60)
            except TetherError as exc:
                errors[exc.code] += 1
                examples.setdefault(exc.code, exc.message)
                await asyncio.sleep(0.01)
                continue
            state["done"] += 1
            if state["measuring"]:
                latencies.append((time.perf_counter_ns() - t) / 1000)

    def snapshot() -> dict[str, Any]:
        return {
            "t": time.perf_counter(),
            "done": state["done"],
            "cpu": {k: cpu_seconds(p) for k, p in pids.items()},
            "gw_threads": thread_cpu(pids["gateway"]),
        }

    tasks = [asyncio.create_task(lane(j)) for j in range(lanes)]
    try:
        await asyncio.sleep(warmup)
        a = snapshot()
        state["measuring"] = True
        await asyncio.sleep(seconds)
        b = snapshot()
        state["stop"] = True
        _, pending = await asyncio.wait(tasks, timeout=60)
    finally:
        state["stop"] = True
        for task in tasks:
            task.cancel()
        for client in clients:
            await client.aclose()
    elapsed, calls = b["t"] - a["t"], b["done"] - a["done"]
    cpu = {k: b["cpu"][k] - a["cpu"][k] for k in pids}
    return {
        "lanes": lanes,
        "admin_connections": len(clients),
        "seconds": elapsed,
        "calls": calls,
        "calls_per_s": calls / elapsed,
        "p50_us": percentile(latencies, 50),
        "p99_us": percentile(latencies, 99),
        "errors": dict(errors),
        "error_examples": examples,
        "unfinished_lanes": len(pending),
        "cpu_cores": {k: v / elapsed for k, v in cpu.items()},
        "cpu_us_per_call": {k: v / max(1, calls) * 1e6 for k, v in cpu.items()},
        "gateway_main_thread_cores": (b["gw_threads"][0] - a["gw_threads"][0]) / elapsed,
        "gateway_other_threads_cores": (b["gw_threads"][1] - a["gw_threads"][1]) / elapsed,
    }


# ---- runner host --------------------------------------------------------------------


async def runner_host(spec: str) -> None:
    """Host one real ``RunnerDaemon`` per identity until stdin closes."""
    from tether.runner.daemon import RunnerDaemon
    from tether.runner.executor import CallExecutor
    from tether.runner.protected import ProtectedPaths
    from tether.runner.sandbox import detect
    from tether.security.capability import CapabilityVerifier

    _quiet()
    config = RunnerConfig(sandbox="off")
    sandbox = detect("off")
    protected = ProtectedPaths([])  # noop calls touch no file
    daemons = []
    for ident in _load(spec):
        roots = {name: Path(p).resolve() for name, p in ident.workspaces.items()}
        verifier = CapabilityVerifier(ident.gateway_public_key, ident.runner_id)
        executor = CallExecutor(
            config=config,
            workspaces=roots,
            verifier=verifier,
            sandbox=sandbox,
            protected=protected,
        )
        daemons.append(
            RunnerDaemon(
                ident,
                executor,
                heartbeat_interval=config.heartbeat_interval,
                shutdown_grace=2.0,
                reconnect_max_delay=config.reconnect_max_delay,
            )
        )
    tasks = [asyncio.create_task(d.run()) for d in daemons]
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(d.registered.wait() for d in daemons)), 120)
    _emit({"ready": len(daemons), "seconds": time.perf_counter() - t0})
    stdin = await _stdin()
    while await stdin.readline():
        _emit({"calls": sum(len(d.executor.calls) for d in daemons)})
    for d in daemons:
        d.stop.set()
    await asyncio.wait(tasks, timeout=10)


# ---- idle host ----------------------------------------------------------------------


class _Idle:
    """Counters shared by the idle runners of one host."""

    def __init__(self) -> None:
        self.heartbeats = 0
        self.failures = 0
        self.clients: list[RpcClient] = []
        self.next = 0
        """Index of the first identity not tried yet."""
        self.tasks: list[asyncio.Task[None]] = []
        self.tools = [ToolInfo(**t) for t in _describe()]


def _describe() -> list[dict[str, Any]]:
    from tether.runner.tools.registry import describe

    return describe()


async def _idle_runner(state: _Idle, ident: RunnerIdentity, interval: float) -> None:
    """Connect, register, and start heartbeating (random phase, then every interval)."""
    client = await connect_ws(
        ident.gateway_url,
        token=ident.credential,
        role="runner",
        agent=f"tether-runner/{__version__}",
        timeout=60,
    )
    params = RunnerRegisterParams(
        version=__version__,
        boot_id=secrets.token_hex(8),
        tools=state.tools,
        workspaces=["app"],
        max_concurrency=16,
        sandbox="none",
    )
    reg = await client.call(RUNNER_REGISTER, params, timeout=60)
    state.clients.append(client)
    every = min(interval, reg.heartbeat_interval)

    async def beat() -> None:
        await asyncio.sleep(random.uniform(0, every))
        while not client.closed:
            try:
                await client.call(RUNNER_HEARTBEAT, HeartbeatParams(inflight=0), timeout=every)
                state.heartbeats += 1
            except TetherError:
                state.failures += 1
            await asyncio.sleep(every)

    state.tasks.append(asyncio.create_task(beat()))


async def _bounded(
    slots: asyncio.Semaphore, errors: list[str], state: _Idle, ident: RunnerIdentity, every: float
) -> None:
    async with slots:
        try:
            await _idle_runner(state, ident, every)
        except (TetherError, OSError) as exc:
            errors.append(repr(exc))


async def idle_host(spec: str) -> None:
    """Read a target count per stdin line, connect up to it, answer with JSON; EOF stops."""
    _quiet()
    identities = _load(spec)
    interval = RunnerConfig().heartbeat_interval
    state = _Idle()
    stdin = await _stdin()
    while line := (await stdin.readline()).strip():
        if line == b"stats":
            _emit(
                {
                    "heartbeats": state.heartbeats,
                    "failures": state.failures,
                    "open": sum(not c.closed for c in state.clients),
                }
            )
            continue
        target = min(int(line), len(identities))
        todo = identities[state.next : target]
        state.next = max(state.next, target)
        slots = asyncio.Semaphore(64)
        errors: list[str] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(_bounded(slots, errors, state, i, interval) for i in todo))
        _emit(
            {
                "connected": len(state.clients),
                "seconds": time.perf_counter() - t0,
                "errors": len(errors),
                "first_error": errors[0] if errors else "",
            }
        )
    # thousands of graceful closes would take longer than the gateway needs to notice
    # the sockets closing with the process
    os._exit(0)
