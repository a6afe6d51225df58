"""`tether runner enroll` as a new user meets it: refusals that say so, re-enrolment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli

MakeRunner = Callable[..., RunnerProcess]


def _enroll(
    runner: RunnerProcess, *args: str, json_output: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tether",
            *(["--json"] if json_output else []),
            "runner",
            "enroll",
            *args,
        ],
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=30 * SCALE,
        check=False,
    )


def _code(gateway: GatewayProcess, name: str, *args: str) -> str:
    added = run_cli(gateway.home, "--json", "runners", "add", name, *args)
    assert added.returncode == 0, added.stderr
    return str(json.loads(added.stdout)["code"])


def test_enrolling_over_plain_http_to_a_remote_gateway_exits_2(home: Path) -> None:
    runner = RunnerProcess(home, "box")
    # refused before any name lookup or connection: the .invalid domain never resolves
    refused = _enroll(runner, "--gateway", "http://gateway.invalid:8765", "--code", "X")
    assert refused.returncode == 2, refused.stderr  # like `tether runner`: retrying won't help
    assert "refusing to enrol over plain http" in refused.stderr
    assert not (runner.config_dir / "runner.json").exists()
    as_json = _enroll(
        runner, "--gateway", "http://gateway.invalid:8765", "--code", "X", json_output=True
    )
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "policy_denied"


def test_enrolling_again_keeps_the_workspaces_unless_given(
    gateway: GatewayProcess, make_runner: MakeRunner, home: Path
) -> None:
    app = home / "app"
    app.mkdir()
    runner = make_runner(gateway, workspaces={"app": app}, start=False)
    identity = runner.config_dir / "runner.json"

    # a new credential (say the old one leaked): enrol again without --workspace
    again = _enroll(runner, "--gateway", gateway.url, "--code", _code(gateway, "box", "--rotate"))
    assert again.returncode == 0, again.stderr
    assert f"workspaces app={app} (kept from the previous enrolment" in again.stdout
    assert json.loads(identity.read_text())["workspaces"] == {"app": str(app)}
    runner.start()  # the daemon starts: it still has its workspace
    assert runner.info["workspaces"] == {"app": str(app)}
    runner.stop()

    # --workspace replaces them
    docs = home / "docs"
    docs.mkdir()
    code = _code(gateway, "box", "--rotate")
    replaced = _enroll(runner, "--gateway", gateway.url, "--code", code, "--workspace", f"d={docs}")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(identity.read_text())["workspaces"] == {"d": str(docs)}

    # a kept workspace that is gone is refused before the one-time code is spent
    docs.rmdir()
    code = _code(gateway, "box", "--rotate")
    gone = _enroll(runner, "--gateway", gateway.url, "--code", code)
    assert gone.returncode == 2
    assert "kept from the previous enrolment" in gone.stderr
    redo = _enroll(
        runner, "--gateway", gateway.url, "--code", code, "-w", f"app={app}", json_output=True
    )
    assert redo.returncode == 0, redo.stderr
    assert json.loads(redo.stdout)["workspaces_kept"] is False
