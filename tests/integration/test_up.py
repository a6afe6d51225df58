"""`tether up`: the gateway and a local runner, enrolled like a remote one, on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.process import SCALE, run_cli, tether_env


def start_up(home: Path, workspace: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether",
            "--json",
            "up",
            "--listen",
            "127.0.0.1:0",
            f"--workspace=proj={workspace}",
        ],
        env=tether_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "tether up printed nothing"
    return proc, json.loads(line)


def wait_for_request(home: Path, run_id: str) -> str:
    """The handle of the run's open request, as `tether approvals list` shows it."""
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline:
        listed = run_cli(home, "--json", "approvals", "list", "--run", run_id)
        assert listed.returncode == 0, listed.stderr
        requests = json.loads(listed.stdout)["requests"]
        if requests:
            return str(requests[0]["handle"])
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} asked for nothing")


def test_up_runs_a_tool_on_the_local_runner_and_stops_cleanly(home: Path) -> None:
    workspace = home / "project"
    workspace.mkdir()
    proc, info = start_up(home, workspace)
    try:
        assert info["runner"] == "local"
        assert info["workspaces"] == {"proj": str(workspace)}
        assert (info["agent"], info["chat"]) == ("operator", "tether chat")
        # the operator agent on the local runner is what tether up starts sessions with
        started = run_cli(home, "--json", "runs", "start", "/write hello.txt\nhi")
        assert started.returncode == 0, started.stderr
        run_id = json.loads(started.stdout)["run"]["id"]
        # a write asks (mode auto-read): the owner approves it from another command
        handle = wait_for_request(home, run_id)
        assert not (workspace / "hello.txt").exists()
        approved = run_cli(home, "approvals", "approve", handle)
        assert approved.returncode == 0, approved.stderr
        assert "allowed once" in approved.stdout
        assert "write_file on local in proj" in approved.stdout
        tail = run_cli(home, "runs", "tail", run_id)
        assert "run.succeeded" in tail.stdout, tail.stdout
        assert (workspace / "hello.txt").read_text() == "hi"
        listing = json.loads(run_cli(home, "--json", "runners", "list").stdout)
        assert [(r["name"], r["online"]) for r in listing["runners"]] == [("local", True)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0
    assert not (home / "run" / "gateway.sock").exists()
    runners = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_our_runner(p, home)]
    assert runners == [], "the local runner outlived tether up"

    # the next start reuses the local runner's identity (no new enrolment)
    ident = home / "data" / "local-runner" / "runner.json"
    credential = json.loads(ident.read_text())["credential"]
    proc, info = start_up(home, workspace)
    try:
        again = json.loads(ident.read_text())
        assert again["credential"] == credential
        assert again["gateway_url"] == info["url"]  # the new port, same credential
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0


def _is_our_runner(proc_dir: Path, home: Path) -> bool:
    try:
        cmd = (proc_dir / "cmdline").read_bytes()
        env = (proc_dir / "environ").read_bytes()
    except OSError:
        return False
    return b"tether\x00runner" in cmd and str(home).encode() in env


def test_up_refuses_a_missing_workspace(home: Path) -> None:
    result = run_cli(home, "up", "--listen", "127.0.0.1:0", f"--workspace=x={home / 'nope'}")
    assert result.returncode == 2
    assert "is not a directory" in result.stderr


def start_up_logged(
    home: Path, workspace: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path]:
    """`tether up` with its stderr in a file; returns once it printed its ready line."""
    proc, log, _ = start_up_announced(home, workspace, *args, env=env)
    return proc, log


def start_up_announced(
    home: Path, workspace: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path, dict[str, object]]:
    """:func:`start_up_logged`, and what it announced (``--json``)."""
    log = home / f"up-{time.monotonic_ns()}.err"
    with log.open("w") as err:
        up = ["--json", "up", "--listen", "127.0.0.1:0", f"--workspace=proj={workspace}"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", *up, *args],
            env=tether_env(home, env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"tether up printed nothing:\n{log.read_text()}"
    return proc, log, json.loads(line)


def _our_runners(home: Path) -> list[Path]:
    return [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_our_runner(p, home)]


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGINT, signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGINT, signal.SIGTERM),
    ],
    ids=["twice", "three-times", "mixed"],
)
def test_repeated_signals_stop_up_cleanly(home: Path, signals: tuple[int, ...]) -> None:
    workspace = home / "project"
    workspace.mkdir()
    proc, log = start_up_logged(home, workspace)
    try:
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        code = proc.wait(30 * SCALE)
    finally:
        proc.kill()
        proc.wait()
    err = log.read_text()
    assert "Traceback" not in err, err
    assert code == 0, err  # as for a single signal
    assert "still stopping" in err
    assert _our_runners(home) == [], "the local runner outlived tether up"
    assert not (home / "run" / "gateway.sock").exists()


def test_up_logs_requests_and_heartbeats_at_debug_level_only(home: Path) -> None:
    workspace = home / "project"
    workspace.mkdir()
    fast = {"TETHER_RUNNER__HEARTBEAT_INTERVAL": "0.2"}
    proc, log = start_up_logged(home, workspace, env=fast)
    try:
        assert run_cli(home, "ping").returncode == 0
        time.sleep(1.0)  # a few heartbeats
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0
    quiet = log.read_text()
    assert "runner registered" in quiet  # info lines still there
    assert "tether.access" not in quiet, quiet

    proc, log = start_up_logged(home, workspace, env={**fast, "TETHER_LOG_LEVEL": "debug"})
    try:
        assert run_cli(home, "ping").returncode == 0
        deadline = time.monotonic() + 20 * SCALE
        while "runner.heartbeat" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0
    lines = log.read_text().splitlines()
    access = [line for line in lines if " tether.access: " in line]
    assert any(" runner.heartbeat " in line for line in access), lines
    assert any(" ping " in line for line in access), lines
    assert all(" DEBUG tether.access: " in line for line in access), access
