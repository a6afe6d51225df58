"""The `tether` command as a user meets it: global options anywhere, exit statuses that
say how a followed run ended, and commands that start without loading the gateway."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.process import SCALE, GatewayProcess, run_cli, tether_env


def test_global_options_are_accepted_after_the_command(gateway: GatewayProcess) -> None:
    home = gateway.home
    listing = run_cli(home, "runs", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == {"runs": [], "next_cursor": None}

    added = run_cli(home, "runners", "add", "box", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["name"] == "box"

    # before the command, as always; and value-taking ones after it, in both spellings
    before = run_cli(home, "--json", "runners", "list")
    assert [r["name"] for r in json.loads(before.stdout)["runners"]] == ["box"]
    other = home / "elsewhere"
    status = run_cli(home, "db", "status", "--data-dir", str(other), "--json")
    assert status.returncode == 0, status.stderr
    assert str(other) in json.loads(status.stdout)["database"]
    debug = run_cli(home, "ping", "--log-level=debug", "--log-format", "json")
    assert debug.returncode == 0, debug.stderr

    # after `--` an option is an argument: this run's input is "--json"
    literal = run_cli(home, "--json", "runs", "start", "--", "--json")
    assert literal.returncode == 0, literal.stderr
    assert json.loads(literal.stdout)["run"]["input"] == "--json"

    bad = run_cli(home, "runs", "list", "--log-level", "loud")
    assert bad.returncode == 2
    assert "log_level" in bad.stderr


def test_following_a_run_exits_with_its_outcome(gateway: GatewayProcess) -> None:
    home = gateway.home
    ok = run_cli(home, "runs", "start", "say hi", "--follow")
    assert (ok.returncode, "run.succeeded" in ok.stdout) == (0, True), ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[1].split() == ["SEQ", "TIME", "SOURCE", "KIND", "DETAIL"]

    failed = run_cli(home, "runs", "start", "fail broken", "--follow")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "run.failed" in failed.stdout

    started = run_cli(home, "--json", "runs", "start", "sleep 30")
    run_id = json.loads(started.stdout)["run"]["id"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "tether", "runs", "tail", run_id],
        env=tether_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_state(home, run_id, "running")
        assert run_cli(home, "runs", "cancel", run_id).returncode == 0
        out, err = tail.communicate(timeout=30 * SCALE)
    finally:
        tail.kill()
    assert tail.returncode == 3, out + err
    assert "run.cancelled" in out

    # the exit status of a finished run, again from its events; in JSON mode too
    again = run_cli(home, "runs", "tail", run_id, "--json")
    assert again.returncode == 3
    assert json.loads(again.stdout.splitlines()[-1])["kind"] == "run.cancelled"


def test_a_run_that_expires_in_the_queue_fails_the_follow(home: Path) -> None:
    gw = GatewayProcess(
        home,
        env={
            "TETHER_RUNS__MAX_ACTIVE": "1",
            "TETHER_RUNS__QUEUE_TTL": "1",
            "TETHER_RUNS__REAP_INTERVAL": "0.2",
        },
    )
    gw.start()
    try:
        busy = run_cli(home, "--json", "runs", "start", "sleep 5")
        _wait_for_state(home, json.loads(busy.stdout)["run"]["id"], "running")
        queued = run_cli(home, "runs", "start", "say never", "--follow")
        assert queued.returncode == 1, queued.stdout + queued.stderr
        assert "run.expired" in queued.stdout
    finally:
        gw.stop()


def test_input_dropped_by_a_full_steering_queue_fails(home: Path) -> None:
    gw = GatewayProcess(home, env={"TETHER_RUNS__STEERING_QUEUE": "1"})
    gw.start()
    try:
        deaf = run_cli(home, "--json", "runs", "start", "sleep 3")  # never pulls steering
        run = json.loads(deaf.stdout)["run"]
        _wait_for_state(home, run["id"], "running")
        first = run_cli(home, "runs", "start", "m0", "--session", run["session_id"])
        assert (first.returncode, "steered" in first.stdout) == (0, True), first.stdout
        second = run_cli(home, "runs", "start", "m1", "--session", run["session_id"])
        assert second.returncode == 1
        assert "dropped" in second.stdout
        assert "steering queue is full" in second.stderr
    finally:
        gw.stop()


def test_list_output_has_column_headers(gateway: GatewayProcess) -> None:
    home = gateway.home
    assert run_cli(home, "runs", "list").stdout.strip() == "no runs"
    run_cli(home, "runs", "start", "say hi", "--follow")
    run_cli(home, "runners", "add", "box")
    for args, header in (
        (("runs", "list"), ["RUN", "STATE", "CREATED", "AGENT", "INPUT"]),
        (
            ("sessions", "list"),
            ["SESSION", "STATUS", "CONVERSATION", "AGENT", "RUNNER", "WORKSPACE", "MODE"],
        ),
        (("runners", "list"), ["NAME", "STATE", "SEEN", "VERSION", "LOAD", "SANDBOX"]),
    ):
        out = run_cli(home, *args)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[: len(header)] == header, out.stdout
        assert len(lines) == 2, out.stdout


HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "aiohttp",
    "cryptography",
    "jwt",
    "pydantic",
    "prometheus_client",
    "tether.app",
    "tether.gateway",
    "tether.ledger",
)


@pytest.mark.parametrize(
    "args",
    [
        ("ping",),
        ("runs", "list"),
        ("sessions", "list"),
        ("runners", "list"),
        ("version",),
        ("--help",),
        ("runs", "start", "--help"),
    ],
    ids=" ".join,
)
def test_commands_that_talk_to_the_gateway_load_nothing_heavy(
    gateway: GatewayProcess, args: tuple[str, ...]
) -> None:
    """What a command imports, read from ``python -X importtime`` (a structural check)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tether", *args],
        env=tether_env(gateway.home),
        capture_output=True,
        text=True,
        timeout=30 * SCALE,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", out.stderr, re.M))
    assert "tether.cli.main" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == [], f"`tether {' '.join(args)}` imports {heavy}"


def _wait_for_state(home: Path, run_id: str, state: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        shown = run_cli(home, "--json", "runs", "show", run_id)
        if json.loads(shown.stdout)["state"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {state}")
