"""The shell tool and the process helper: output, caps, environment, and no orphans."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unit
from tests.support.tools import tool_context
from tether.errors import PolicyDenied, ToolFailed, ToolTimeout
from tether.runner import sandbox
from tether.runner.process import run_process
from tether.runner.sandbox import SandboxInfo
from tether.runner.tools.base import ToolContext
from tether.runner.tools.shell import ShellParams, effective_timeout, shell


def _stat_fields(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def live(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = _stat_fields(pid)
        if marker.encode() in cmdline and fields is not None and fields[0] != "Z":
            found.append(int(pid))
    return found


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(pid))
    return found


def sleepers(seconds: str) -> list[int]:
    """Pids of live processes running exactly ``sleep SECONDS``."""
    wanted = f"sleep\0{seconds}\0".encode()
    found = []
    for pid in live(seconds):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == wanted:
                found.append(pid)
        except OSError:
            continue
    return found


async def eventually(check: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + unit(timeout)
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "ws"


OFF = SandboxInfo(None, "off", "off for this test")


def ctx_for(
    ws: Path,
    *,
    sandboxed: bool = False,
    progress: Any = None,
    info: SandboxInfo | None = None,
    **config: Any,
) -> ToolContext:
    if info is None:
        info = sandbox.detect("bwrap") if sandboxed else OFF
    config.setdefault("sandbox", "auto" if sandboxed else "off")
    return tool_context(
        ws, protected=[ws / "secret"], sandbox_info=info, progress=progress, timeout=60.0, **config
    )


SANDBOX = [False, pytest.param(True, id="bwrap")]


@pytest.mark.parametrize("sandboxed", SANDBOX)
async def test_output_is_merged_in_arrival_order(ws: Path, sandboxed: bool) -> None:
    cmd = "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; exit 3"
    r = await shell(ctx_for(ws, sandboxed=sandboxed), ShellParams(command=cmd))
    assert r.output == "out1\nerr1\nout2\n"
    assert (r.exit_code, r.truncated, r.timed_out, r.sandboxed) == (3, False, False, sandboxed)
    assert 0.15 < r.duration < unit(10)


async def test_exit_by_signal_is_reported_shell_style(ws: Path) -> None:
    r = await shell(ctx_for(ws), ShellParams(command="kill -9 $$"))
    assert r.exit_code == 137


async def test_progress_streams_before_the_command_ends(ws: Path) -> None:
    seen: list[tuple[str, str]] = []
    ctx = ctx_for(ws, progress=lambda stream, text: seen.append((stream, text)))
    cmd = "echo first; echo warn >&2; sleep 0.5; echo last"
    task = asyncio.create_task(shell(ctx, ShellParams(command=cmd)))
    await eventually(lambda: ("stdout", "first\n") in seen and ("stderr", "warn\n") in seen)
    assert not task.done()
    r = await asyncio.wait_for(task, unit(10))
    assert seen[-1] == ("stdout", "last\n")
    assert r.output == "first\nwarn\nlast\n"


@pytest.mark.parametrize("sandboxed", SANDBOX)
async def test_output_is_capped_but_the_pipe_keeps_draining(ws: Path, sandboxed: bool) -> None:
    sent: list[str] = []
    ctx = ctx_for(
        ws, sandboxed=sandboxed, output_cap_bytes=1000, progress=lambda s, t: sent.append(t)
    )
    cmd = "head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2"
    r = await asyncio.wait_for(shell(ctx, ShellParams(command=cmd)), unit(30))
    assert r.exit_code == 0
    assert r.truncated
    assert r.output == "x" * 1000 + "\n[... output truncated: 4999005 more bytes ...]\n"
    assert "".join(sent) == "x" * 1000


async def test_environment_is_scrubbed(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_TEST_SECRET", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    ctx = ctx_for(ws, env_allowlist=["LANG", "PATH", "NOT_SET_ANYWHERE"])
    r = await shell(ctx, ShellParams(command="env", cwd="sub"))
    env = dict(line.split("=", 1) for line in r.output.splitlines() if "=" in line)
    assert "TETHER_TEST_SECRET" not in env
    assert "hunter2" not in r.output
    assert env["LANG"] == "C.UTF-8"
    assert env["PWD"] == str(ws / "sub")
    assert env["TETHER_CALL_ID"] == "call_test"  # lets the runner find the call's orphans
    assert set(env) <= {"LANG", "PATH", "PWD", "SHLVL", "_", "OLDPWD", "TETHER_CALL_ID"}


async def test_cwd_goes_through_the_policy(ws: Path) -> None:
    r = await shell(ctx_for(ws), ShellParams(command="pwd", cwd="sub"))
    assert r.output == f"{ws / 'sub'}\n"
    (ws / "out").symlink_to(ws.parent / "outside")
    for cwd in ("..", "out", "secret", "/"):
        with pytest.raises(PolicyDenied):
            await shell(ctx_for(ws), ShellParams(command="pwd", cwd=cwd))
    (ws / "file").write_text("")
    with pytest.raises(ToolFailed) as info:
        await shell(ctx_for(ws), ShellParams(command="pwd", cwd="file"))
    assert info.value.data["reason"] == "not_a_directory"


async def test_timeout_kills_the_whole_group(ws: Path) -> None:
    cmd = "echo started $$; sleep 987.601 & sleep 987.601; wait"
    started = time.monotonic()
    with pytest.raises(ToolTimeout) as info:
        await shell(ctx_for(ws), ShellParams(command=cmd, timeout=0.5))
    assert time.monotonic() - started < unit(10)
    output = info.value.data["output"]
    assert output.startswith("started ")
    assert info.value.data["timeout"] == 0.5
    pgid = int(output.split()[1])
    await eventually(lambda: not live("987.601") and not group_members(pgid))


async def test_cancellation_kills_the_whole_group(ws: Path) -> None:
    cmd = "trap '' TERM; sleep 987.602 & sleep 987.602; wait"
    task = asyncio.create_task(shell(ctx_for(ws), ShellParams(command=cmd)))
    await eventually(lambda: len(sleepers("987.602")) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, unit(10))
    await eventually(lambda: not live("987.602"))


async def test_sandboxed_timeout_also_kills_escaped_sessions(ws: Path) -> None:
    cmd = "setsid sleep 987.603 & sleep 987.603; wait"
    task = asyncio.create_task(shell(ctx_for(ws, sandboxed=True), ShellParams(command=cmd)))
    await eventually(lambda: len(sleepers("987.603")) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, unit(10))
    await eventually(lambda: not live("987.603"))


async def test_sandboxed_shell_writes_only_the_workspace(ws: Path) -> None:
    target = ws.parent / "outside" / "escaped"
    cmd = f"echo ok > inside && echo bad > {target}; echo rc=$?"
    r = await shell(ctx_for(ws, sandboxed=True), ShellParams(command=cmd))
    assert r.sandboxed
    assert (ws / "inside").read_text() == "ok\n"
    assert "rc=1" in r.output
    assert not target.exists()


async def test_no_sandbox_means_no_shell_unless_off_was_chosen(ws: Path) -> None:
    missing = SandboxInfo(None, "unavailable", "no sandbox: bubblewrap is not installed")
    for ctx in (ctx_for(ws, info=missing), tool_context(ws, sandbox_info=None)):
        with pytest.raises(PolicyDenied) as denied:
            await shell(ctx, ShellParams(command="touch ran"))
        assert denied.value.data["reason"] == "sandbox_unavailable"
    assert not (ws / "ran").exists()
    r = await shell(ctx_for(ws, info=OFF), ShellParams(command="touch ran"))
    assert (r.exit_code, r.sandboxed) == (0, False)
    assert (ws / "ran").exists()


def test_effective_timeout(ws: Path) -> None:
    ctx = ctx_for(ws, default_timeout=30.0, max_timeout=100.0)
    assert effective_timeout(ctx, None) == 30.0
    assert effective_timeout(ctx, 5.0) == 5.0
    assert effective_timeout(ctx, 500.0) == 60.0
    ctx.timeout = 1000.0
    assert effective_timeout(ctx, 500.0) == 100.0


# run_process directly


async def test_background_jobs_die_when_the_command_exits(tmp_path: Path) -> None:
    started = time.monotonic()
    r = await run_process(
        ["bash", "-c", "sleep 987.604 & echo done"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout=unit(20),
        output_cap=100,
    )
    assert (r.exit_code, r.output, r.timed_out) == (0, b"done\n", False)
    assert time.monotonic() - started < unit(5)
    await eventually(lambda: not live("987.604"))


async def test_stop_event_and_stderr_only_capture(tmp_path: Path) -> None:
    stop = asyncio.Event()
    chunks: list[tuple[str, bytes]] = []

    def on_output(stream: str, data: bytes) -> None:
        chunks.append((stream, data))
        if b"go" in data:
            stop.set()

    r = await run_process(
        ["bash", "-c", "echo warn >&2; sleep 0.2; echo go; sleep 987.605"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout=unit(20),
        output_cap=100,
        on_output=on_output,
        capture=("stderr",),
        stop=stop,
    )
    assert r.stopped
    assert not r.timed_out
    assert r.output == b"warn\n"
    assert ("stdout", b"go\n") in chunks
    await eventually(lambda: not live("987.605"))


async def test_callback_errors_stop_the_process_and_propagate(tmp_path: Path) -> None:
    def on_output(stream: str, data: bytes) -> None:
        raise RuntimeError("consumer broke")

    with pytest.raises(RuntimeError, match="consumer broke"):
        await run_process(
            ["bash", "-c", "echo hi; sleep 987.606"],
            cwd=tmp_path,
            env={},
            timeout=unit(20),
            output_cap=100,
            on_output=on_output,
        )
    await eventually(lambda: not live("987.606"))


async def test_spawn_failure_is_a_tool_failure(tmp_path: Path) -> None:
    with pytest.raises(ToolFailed) as info:
        await run_process(
            [str(tmp_path / "no-such-binary")], cwd=tmp_path, env={}, timeout=5, output_cap=10
        )
    assert info.value.data["reason"] == "spawn_failed"
