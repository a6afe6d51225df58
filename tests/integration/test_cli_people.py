"""The people commands through the real CLI: users, approvals, policy, tools call --ask."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli, tether_env

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


def ok(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = run_cli(home, *args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_users_log_in_with_their_token_and_see_only_their_own(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway(TETHER_RUNS__FIXTURE_ROLES="admin,member")
    added = json.loads(ok(home, "--json", "users", "add", "alice"))
    assert added["user"]["role"] == "member"
    token = added["token"]
    text = ok(home, "users", "add", "vera", "--role", "viewer")
    assert "shown once" in text
    assert "ttu_" in text
    listed = ok(home, "users", "list")
    assert "alice" in listed
    assert "viewer" in listed
    assert token not in listed  # the token is shown once, never again

    as_alice = {"TETHER_TOKEN": token}
    url = ("--url", gw.url)
    started = json.loads(ok(home, "--json", "runs", "start", "say hi", *url, env=as_alice))
    run_id = started["run"]["id"]
    assert started["run"]["created_by"] == added["user"]["id"]
    mine = json.loads(ok(home, "--json", "runs", "list", *url, env=as_alice))
    assert [r["id"] for r in mine["runs"]] == [run_id]
    vera = json.loads(ok(home, "--json", "users", "add", "vera2", "--role", "viewer"))["token"]
    as_vera = {"TETHER_TOKEN": vera}
    assert json.loads(ok(home, "--json", "runs", "list", *url, env=as_vera))["runs"] == []
    hidden = run_cli(home, "runs", "show", run_id, *url, env=as_vera)
    assert hidden.returncode == 1
    assert "does not exist" in hidden.stderr
    refused = run_cli(home, "runs", "start", "say hi", *url, env=as_vera)
    assert refused.returncode == 1
    assert "viewer may not" in refused.stderr
    not_owner = run_cli(home, "users", "list", *url, env=as_alice)
    assert not_owner.returncode == 1

    assert "alice revoked" in ok(home, "users", "revoke", "alice")
    after = run_cli(home, "runs", "list", *url, env=as_alice)
    assert after.returncode == 1
    assert "rejected the token" in after.stderr


def test_tools_call_ask_waits_for_an_approval_from_another_terminal(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway()
    make_runner(gw)
    args = json.dumps({"command": "echo asked >> asked.txt"})
    waiting = subprocess.Popen(
        [sys.executable, "-m", "tether", "tools", "call", "box", "shell", "--args", args, "--ask"],
        env=tether_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        handle = ""
        deadline = time.monotonic() + 20 * SCALE
        while not handle and time.monotonic() < deadline:
            found = json.loads(ok(home, "--json", "approvals", "list"))["requests"]
            handle = found[0]["handle"] if found else ""
            time.sleep(0.1)
        assert handle, "the call asked for nothing"
        assert not (home / "ws-box" / "asked.txt").exists()
        listed = ok(home, "approvals", "list")
        assert handle in listed
        assert "shell in app" in listed
        approved = ok(home, "approvals", "approve", handle)
        assert "$ echo asked > asked.txt" in approved
        assert f"approval {handle} allowed once" in approved
        assert "allowed by local-admin" in approved  # decided: no expiry shown any more
        out, err = waiting.communicate(timeout=30 * SCALE)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert f"waiting for approval of request {handle}" in err
    assert "[exit 0" in out
    assert (home / "ws-box" / "asked.txt").read_text() == "asked\n"
    denied = run_cli(
        home, "tools", "call", "box", "shell", "--args", json.dumps({"command": "rm -rf /"})
    )
    assert denied.returncode == 1
    assert "deny list" in denied.stderr
    assert "did not run" in denied.stderr


def test_policy_show_and_explain(make_gateway: MakeGateway, home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[policy.rules]]\ntool = "shell"\ncommand = "git status*"\ndecision = "allow"\n'
        'reason = "read-only git"\n'
    )
    make_gateway(TETHER_CONFIG=str(config))
    shown = ok(home, "policy", "show")
    assert "deny list entry 1" in shown
    assert "config rule 1: allow tool='shell' command='git status*' (read-only git)" in shown
    assert "then mode auto-read: read allow, write ask, exec ask" in shown
    explained = ok(
        home, "policy", "explain", "shell", "--args", '{"command": "git status && make"}',
        "--risk", "exec",
    )  # fmt: skip
    assert explained.startswith("ask: mode auto-read: exec calls ask")
    assert "$ git status  ->  allow" in explained
    assert "$ make  ->  ask" in explained
    denied = json.loads(
        ok(home, "--json", "policy", "explain", "shell", "--args", '{"command": "curl x | sh"}')
    )
    assert (denied["decision"], denied["source"]) == ("deny", "deny list")
    unparsed = ok(home, "policy", "explain", "shell", "--args", '{"command": "cat <<EOF"}')
    assert "could not be parsed" in unparsed
