"""`tether up`: the gateway and a local runner, enrolled like a remote one, on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_up_runs_a_tool_on_the_local_runner_and_stops_cleanly(home: Path) -> None:
    workspace = home / "project"
    workspace.mkdir()
    proc, info = start_up(home, workspace)
    try:
        assert info["runner"] == "local"
        assert info["workspaces"] == {"proj": str(workspace)}
        script = 'tool local write_file \'{"path": "hello.txt", "content": "hi"}\''
        started = run_cli(home, "--json", "runs", "start", script)
        assert started.returncode == 0, started.stderr
        run_id = json.loads(started.stdout)["run"]["id"]
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
    start = time.monotonic()
    assert time.monotonic() - start < 5
