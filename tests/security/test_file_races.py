"""A concurrent writer swapping a directory for a symlink cannot redirect a file tool.

The review's attack: a shell command swaps a workspace directory ``d`` and a symlink to a
directory outside (``renameat2(RENAME_EXCHANGE)``, in a loop) while ordinary
``write_file d/NAME`` and ``read_file d/FILE`` calls run. The old code, which checked a
resolved path and then opened it again, wrote outside the workspace within 3-26 calls
and read an outside file within 2-38. Every file tool here goes through the race.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from pathlib import Path

from tests.conftest import unit
from tests.security.conftest import Rig, snapshot
from tests.support.race import RACER_SOURCE
from tether.errors import TetherError
from tether.protocol.methods import TOOL_CALL
from tether.protocol.runners import ToolCallParams
from tether.transport.client import RpcClient, connect_ws

ROUNDS = 150
"""Rounds of five tool calls each; the old code failed in the first few dozen calls."""
ALLOWED_REFUSALS = {
    "policy_denied/symlink",
    "policy_denied/changed",
    "tool_failed/not_found",
    "tool_failed/not_a_directory",
}


async def call(c: RpcClient, tool: str, **args: object) -> bytes:
    out = await c.call(
        TOOL_CALL, ToolCallParams(runner="box", tool=tool, args=dict(args), timeout=30), timeout=60
    )
    return bytes(out.result)


async def test_swapping_a_directory_for_a_symlink_never_lets_a_call_out(
    rig: Rig, home: Path
) -> None:
    ws, outside = home / "ws", home / "outside"
    (ws / "d").mkdir(parents=True)
    outside.mkdir()
    (ws / "d" / "note.txt").write_text("inside the workspace\n")
    (outside / "note.txt").write_text("OUTSIDE SECRET\n")
    (outside / "outside-only.txt").write_text("OUTSIDE SECRET\n")
    (ws / "swap").symlink_to(outside)
    (ws / "racer.py").write_text(RACER_SOURCE)
    before = snapshot(outside)
    rig.runner({"app": ws})
    outcomes: collections.Counter[str] = collections.Counter()
    async with await connect_ws(
        rig.gateway.ws_url, token=rig.gateway.admin_token, role="admin"
    ) as c:
        racer = asyncio.create_task(
            call(c, "shell", command="python3 racer.py d swap 60", timeout=90)
        )
        end = time.monotonic() + unit(20)
        while not (ws / "racing").exists():
            assert time.monotonic() < end, "the racer did not start"
            assert not racer.done(), racer.result()
            await asyncio.sleep(0.05)
        try:
            for i in range(ROUNDS):
                for tool, args in (
                    ("write_file", {"path": f"d/w{i}.txt", "content": "written\n"}),
                    ("read_file", {"path": "d/note.txt"}),
                    ("list_dir", {"path": "d"}),
                    ("glob", {"pattern": "*", "path": "d"}),
                    ("grep", {"pattern": "SECRET|workspace", "path": "d"}),
                ):
                    try:
                        result = await call(c, tool, **args)
                    except TetherError as exc:
                        outcomes[f"{exc.code}/{exc.data.get('reason')}"] += 1
                        continue
                    outcomes[f"{tool} ok"] += 1
                    assert b"OUTSIDE" not in result, (tool, result)
                    assert b"outside-only" not in result, (tool, result)
        finally:
            (ws / "stop").touch()
            with contextlib.suppress(TetherError):
                await racer
    assert snapshot(outside) == before, outcomes
    refusals = {k for k in outcomes if not k.endswith(" ok")}
    assert refusals <= ALLOWED_REFUSALS, outcomes
    assert outcomes["write_file ok"] > 0, outcomes  # the race really ran both ways
    assert outcomes["policy_denied/symlink"] > 0, outcomes
