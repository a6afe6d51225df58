"""Large tool results: cut to fit one frame and answered at once; the runner's memory flat.

The review: a 5 MB grep result came back after 9-13 s as `runner_offline`, the runner
re-registering 4-5 times (the frame broke the connection and the re-send looped); and
300 results of ~0.85 MB took the runner from 68 to 325 MiB (its outcome cache kept
10,000 outcomes for 600 s whatever their size).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.security.conftest import Rig, tool
from tether.transport.client import connect_ipc


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_result_over_the_frame_limit_is_cut_and_answered(rig: Rig, home: Path) -> None:
    ws = home / "ws"
    ws.mkdir()
    line = "match " + "y" * 490 + "\n"
    for i in range(100):
        (ws / f"f{i:03}.txt").write_text(line * 100)  # 10,000 matches, ~5 MB of results
    runner = rig.runner({"app": ws})
    async with await connect_ipc(rig.gateway.socket) as c:
        found = await tool(c, "box", "grep", pattern="match", limit=10_000)
        again = await tool(c, "box", "shell", command="cat f*.txt")
    assert found["truncated"] is True
    assert 500 < len(found["matches"]) < 10_000
    assert len(json.dumps(found, separators=(",", ":"))) <= 1024 * 1024
    assert again["truncated"] is True  # the output cap (256 KiB) came first
    assert "disconnected" not in runner.stderr()
    assert "reconnecting" not in runner.stderr()


async def test_the_runner_keeps_outcomes_within_its_byte_budget(rig: Rig, home: Path) -> None:
    ws = home / "ws"
    ws.mkdir()
    (ws / "big.txt").write_text("z" * 850_000)
    runner = rig.runner(
        {"app": ws},
        env={
            "TETHER_RUNNER__OUTPUT_CAP_BYTES": "900000",
            "TETHER_RUNNER__OUTCOME_CACHE_BYTES": str(16 * 1024 * 1024),
        },
    )
    async with await connect_ipc(rig.gateway.socket) as c:
        for _ in range(25):
            await tool(c, "box", "read_file", path="big.txt")
        warm = rss_kib(runner.pid)
        for _ in range(100):
            result = await tool(c, "box", "read_file", path="big.txt")
            assert len(result["content"]) == 850_000
        after = rss_kib(runner.pid)
    # 100 kept outcomes would be ~85 MiB more; the budget allows 16 MiB in all.
    assert after - warm < 40 * 1024, (warm, after)
