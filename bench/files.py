"""File tools through the gateway and a real runner, against ``noop`` measured in the same run.

    python bench/files.py [--quick] [--calls N] [--out FILE]

One gateway (SQLite) and one real ``tether runner`` (enrolled through ``runner.add`` and
``tether runner enroll``) with a workspace holding a small tree. An admin client calls,
sequentially over the Unix socket and interleaved in rounds so that machine drift hits
every row alike: ``noop``, ``read_file`` of a 4 KiB file three directories down,
``write_file`` of 4 KiB there, ``list_dir`` of a 100-entry directory and ``glob **/*.py``
over ~400 files. Each row's p50 is stated as a ratio to ``noop``: what the file work
(the descriptor walk, identity checks, the atomic write) adds to a call. Client and
runner run on one CPU, the gateway on the other (see ``common.pinned``).

The tree and calls use only the public API, so the same script measures another
checkout's code: ``PYTHONPATH=OTHER/src python bench/files.py`` (the source measured is
printed and recorded). Results: bench/results/files.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tether
from common import Gateway, percentile, pinned, print_table, short_tempdir, tether_env, write_json
from load import Children, start_runner, timed
from tether.protocol.methods import RUNNER_LIST, TOOL_CALL
from tether.protocol.runners import ToolCallParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("noop (baseline)", "noop", {"echo": ""}),
    ("read_file 4 KiB, depth 3", "read_file", {"path": "src/pkg/mod/data.txt"}),
    ("write_file 4 KiB, depth 3", "write_file", {"path": "src/pkg/mod/out.txt", "content": "w" * 4096}),
    ("list_dir 100 entries", "list_dir", {"path": "many"}),
    ("glob **/*.py (~400 files)", "glob", {"pattern": "**/*.py"}),
]  # fmt: skip


def make_tree(root: Path) -> None:
    deep = root / "src" / "pkg" / "mod"
    deep.mkdir(parents=True)
    (deep / "data.txt").write_text("r" * 4096)
    (root / "many").mkdir()
    for i in range(100):
        (root / "many" / f"f{i:03}.txt").write_text("x")
    for d in range(20):
        sub = root / "code" / f"d{d:02}"
        sub.mkdir(parents=True)
        for i in range(20):
            (sub / f"m{i:02}.py").write_text("pass\n")


async def wait_online(admin: RpcClient, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = await admin.call(RUNNER_LIST, Empty())
        if any(r.name == name and r.online for r in listing.runners):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the runner did not come online")


async def measure(calls: int) -> dict[str, Any]:
    kids = Children()
    with short_tempdir() as home:
        (home / "gw").mkdir()
        workspace = home / "workspace"
        make_tree(workspace)
        gw = Gateway(home / "gw")
        try:
            env = tether_env(home / "runner")
            async with await connect_ipc(gw.info["socket"]) as admin:
                daemon = await start_runner(admin, kids, gw.info["url"], "files", workspace, env)
                await wait_online(admin, "files", 60)
                samples: dict[str, list[float]] = {label: [] for label, _, _ in CALLS}

                def caller(tool: str, args: dict[str, Any]) -> Any:
                    params = ToolCallParams(runner="files", tool=tool, args=args)
                    return lambda: admin.call(TOOL_CALL, params, timeout=30)

                fns = [(label, caller(tool, args)) for label, tool, args in CALLS]
                with pinned([os.getpid(), daemon.pid], [gw.pid]) as pinning:
                    for _ in range(50):  # warm up
                        for _, fn in fns:
                            await fn()
                    for _ in range(calls):
                        for label, fn in fns:
                            samples[label].append(await timed(fn))
                await kids.stop(daemon)
        finally:
            await kids.close()
            gw.close()
    return {"calls_per_row": calls, "pinning": pinning, "samples": samples}


def report(r: dict[str, Any]) -> dict[str, Any]:
    rows, out = [], {}
    base = percentile(r["samples"][CALLS[0][0]], 50)
    for label, _, _ in CALLS:
        values = r["samples"][label]
        p50, p99 = percentile(values, 50), percentile(values, 99)
        out[label] = {"p50_us": p50, "p99_us": p99, "ratio_to_noop": p50 / base}
        rows.append([label, p50, p99, p50 / base])
    print_table(
        f"File tools through gateway + real runner ({r['calls_per_row']} calls per row, "
        f"interleaved; tether from {Path(tether.__file__).parent.parent})",
        ["call", "p50 µs", "p99 µs", "p50 ratio to noop"],
        rows,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 calls per row")
    parser.add_argument("--calls", type=int, help="calls per row (default 1000)")
    parser.add_argument("--out", help="JSON output file (default bench/results/files.json)")
    args = parser.parse_args()
    calls = args.calls or (200 if args.quick else 1000)
    results = uvloop.run(measure(calls))
    summary = report(results)
    del results["samples"]
    write_json(
        "files",
        {"source": str(Path(tether.__file__).parent), **results, "rows": summary},
        args.out,
    )


if __name__ == "__main__":
    main()
