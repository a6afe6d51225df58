"""The weak spots of the review: hard links, escaped descendants, and a missing sandbox.

- A hard link inside the workspace to a file outside is not read by ``read_file`` or
  reported by ``grep``.
- With ``sandbox = off``, descendants that left the process group (``setsid``, double
  forks, a cleared environment) die when their call ends: on exit, timeout and cancel.
- Where bubblewrap is missing the runner says so, ``tether runners list`` shows it, and
  ``shell`` is refused unless ``sandbox = off`` was chosen.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from pathlib import Path

from tests.conftest import unit
from tests.security.conftest import Rig, refusal, snapshot, tool
from tests.support import runs as r
from tests.support.process import run_cli
from tether.protocol.methods import RUN_CANCEL, RUN_CREATE
from tether.protocol.runs import RunCancelParams, RunCreateParams
from tether.transport.client import RpcClient, connect_ipc


def sleepers(marker: str) -> list[int]:
    """Live processes running ``sleep MARKER`` (by any path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        named = len(cmd) > 1 and cmd[0].endswith(b"sleep") and cmd[1] == marker.encode()
        if named and state != "Z":
            found.append(int(pid))
    return found


async def gone(marker: str, timeout: float = 10.0) -> bool:
    end = time.monotonic() + unit(timeout)
    while sleepers(marker):
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.05)
    return True


def markers(tag: int) -> list[str]:
    base = time.time_ns() % 100_000 + 2000
    return [f"{base}.{tag}{i}" for i in range(4)]


def escapes(m: list[str]) -> str:
    """Four ways out of the process group: setsid, a double fork, a cleared environment,
    and nohup in a subshell that exits."""
    return (
        f"setsid sleep {m[0]} & "
        f"(setsid sh -c 'sleep {m[1]}' &); "
        f"(env -i /usr/bin/setsid /usr/bin/sleep {m[2]} &); "
        f"(nohup sleep {m[3]} >/dev/null 2>&1 &); "
        "sleep 0.3; echo started"
    )


async def test_hard_links_to_outside_files_are_not_read(rig: Rig, home: Path) -> None:
    ws, outside = home / "ws", home / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE SECRET\n")
    os.link(outside / "secret.txt", ws / "innocent.txt")
    (ws / "plain.txt").write_text("an ordinary SECRET\n")
    rig.runner({"app": ws})
    async with await connect_ipc(rig.gateway.socket) as c:
        error = await refusal(c, "box", "read_file", path="innocent.txt")
        assert (error.code, error.data["reason"]) == ("policy_denied", "hardlink")
        error = await refusal(c, "box", "edit_file", path="innocent.txt", old="O", new="X")
        assert error.data["reason"] == "hardlink"
        found = await tool(c, "box", "grep", pattern="SECRET")
        assert [m["path"] for m in found["matches"]] == ["plain.txt"]
        assert found["engine"] == "ripgrep"
    assert (outside / "secret.txt").read_text() == "OUTSIDE SECRET\n"


async def test_unsandboxed_descendants_die_with_their_call(rig: Rig, home: Path) -> None:
    ws = home / "ws"
    ws.mkdir()
    rig.runner({"app": ws}, env={"TETHER_RUNNER__SANDBOX": "off"})
    async with await connect_ipc(rig.gateway.socket) as c:
        on_exit = markers(1)
        result = await tool(c, "box", "shell", command=escapes(on_exit))
        assert (result["sandboxed"], result["output"].strip()) == (False, "started")
        for m in on_exit:
            assert await gone(m), f"sleep {m} outlived its call (exit)"

        on_timeout = markers(2)
        error = await refusal(
            c, "box", "shell", command=escapes(on_timeout) + "; sleep 600", timeout=2
        )
        assert error.code == "tool_timeout"
        for m in on_timeout:
            assert await gone(m), f"sleep {m} outlived its call (timeout)"

        on_cancel = markers(3)
        await cancelled_run(c, escapes(on_cancel) + "; sleep 600", on_cancel[0])
        for m in on_cancel:
            assert await gone(m), f"sleep {m} outlived its call (cancel)"


async def cancelled_run(c: RpcClient, command: str, started: str) -> None:
    script = f"tool box shell {shlex.quote(json.dumps({'command': command}))}"
    created = await c.call(RUN_CREATE, RunCreateParams(input=script))
    end = time.monotonic() + unit(15)
    while not sleepers(started):
        assert time.monotonic() < end, "the command did not start"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let every escape happen
    await c.call(RUN_CANCEL, RunCancelParams(run_id=created.run.id))
    done = await r.wait_state(c, created.run.id, timeout=20)
    assert done.state == "cancelled"


async def test_without_bubblewrap_shell_is_refused_and_it_says_so(rig: Rig, home: Path) -> None:
    ws = home / "ws"
    ws.mkdir()
    runner = rig.runner({"app": ws}, env={"TETHER_RUNNER__BWRAP": str(home / "no-bwrap")})
    before = snapshot(home, skip=(home / "data", home / "run", ws))
    assert runner.info["sandbox"].startswith("no sandbox")
    assert "refused" in runner.info["sandbox"]
    async with await connect_ipc(rig.gateway.socket) as c:
        error = await refusal(c, "box", "shell", command="touch ran.txt")
        assert (error.code, error.data["reason"]) == ("policy_denied", "sandbox_unavailable")
        written = await tool(c, "box", "write_file", path="ok.txt", content="file tools work")
        assert written["bytes_written"] == 15
        found = await tool(c, "box", "grep", pattern="file tools")
        assert found["engine"] == "python"  # ripgrep runs only inside the sandbox
    assert not (ws / "ran.txt").exists()
    listing = json.loads(run_cli(home, "--json", "runners", "list").stdout)
    assert [(x["name"], x["sandbox"]) for x in listing["runners"]] == [("box", "unavailable")]
    human = run_cli(home, "runners", "list").stdout
    assert "unavailable" in human
    after = snapshot(home, skip=(home / "data", home / "run", ws))
    assert {k: v for k, v in after.items() if not k.endswith(".err")} == {
        k: v for k, v in before.items() if not k.endswith(".err")
    }
