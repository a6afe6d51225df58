"""Helpers shared by the benchmarks: processes, percentiles, CPU readings, tables, JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (and threads it starts later) to ``cpus``."""
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def pinned(client: Sequence[int], servers: Sequence[int]) -> Iterator[str]:
    """Run the client processes on one CPU and the servers on another, if there are two.

    On a 2-core machine the scheduler otherwise drifts, over seconds, between running a
    client and its server on the same core (a wake-up costs ~15 µs) and on different cores
    (~70 µs): that drift alone would swing a latency ratio by 4x. Pinned, every hop crosses
    cores and every path is measured the same way. Yields a description for the report;
    gives every process all CPUs back on exit.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        yield "not pinned (one CPU)"
        return
    for pid in servers:
        pin_threads(pid, {allowed[1]})
    for pid in client:
        pin_threads(pid, {allowed[0]})
    try:
        yield f"clients on CPU {allowed[0]}, servers on CPU {allowed[1]}"
    finally:
        for pid in (*client, *servers):
            pin_threads(pid, set(allowed))


@contextlib.contextmanager
def short_tempdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tether_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "XDG_"))}
    env.update(
        HOME=str(home),
        TETHER_DATA_DIR=str(home / "data"),
        TETHER_RUNTIME_DIR=str(home / "run"),
        TETHER_CONFIG_DIR=str(home / "config"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _gateway_log() -> Any:
    """Where a benchmark's gateway logs: ``$BENCH_GATEWAY_LOG`` if set, else nowhere."""
    path = os.environ.get("BENCH_GATEWAY_LOG")
    return open(path, "a") if path else subprocess.DEVNULL


class Gateway:
    """A `tether gateway` subprocess for a benchmark."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.home = home
        cmd = [sys.executable, "-m", "tether", "--json", "--log-level", "warning", "gateway"]
        cmd += list(args) or ["--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            cmd,
            env=tether_env(home, **env),
            stdout=subprocess.PIPE,
            stderr=_gateway_log(),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("gateway failed to start")
        self.info: dict[str, Any] = json.loads(line)
        self.token = (home / "data" / "admin.token").read_text().strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if j else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def write_json(name: str, data: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
