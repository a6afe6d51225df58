"""A run's authorization: manifest permissions ∩ the session's runner and workspace ∩ its tools."""

from __future__ import annotations

from tether.agents import Capabilities, Manifest, Permissions
from tether.gateway.authorization import Authorization, freeze

OFFERED = {
    "tools": ["read_file", "write_file", "shell", "noop", "legacy"],
    "tool_risks": {"read_file": "read", "write_file": "write", "shell": "exec", "noop": "read"},
    "workspaces": ["app", "docs"],
}


def manifest(tools: list[str], workspaces: list[str] | None = None, **caps: bool) -> Manifest:
    perms = Permissions(tools=tools, workspaces=workspaces or ["*"], network=["https://x/v1"])
    return Manifest(
        id="a", version="1", label="a", capabilities=Capabilities(**caps), permissions=perms
    )


def test_tools_are_named_or_by_risk_class_and_unknown_risk_is_exec() -> None:
    auth = freeze(
        manifest(["read", "write_file"]), runner_id="rnr_1", workspace="app", offered=OFFERED
    )
    assert auth.tools == ["noop", "read_file", "write_file"]
    assert (auth.runner_id, auth.workspaces, auth.network) == ("rnr_1", ["app"], ["https://x/v1"])
    every = freeze(manifest(["exec"]), runner_id="rnr_1", workspace="app", offered=OFFERED)
    assert every.tools == ["legacy", "shell"]  # a tool registered without a risk counts as exec


def test_the_session_workspace_or_the_runners_when_it_names_none() -> None:
    named = freeze(manifest(["*"], ["docs"]), runner_id="r", workspace="app", offered=OFFERED)
    assert named.workspaces == []  # the manifest does not allow the session's workspace
    unnamed = freeze(manifest(["*"]), runner_id="r", workspace=None, offered=OFFERED)
    assert unnamed.workspaces == ["app", "docs"]


def test_refusals_say_why() -> None:
    auth = freeze(manifest(["read"]), runner_id="rnr_1", workspace="app", offered=OFFERED)
    assert auth.refusal("rnr_1", "read_file", "app") is None
    assert "tool 'shell'" in (auth.refusal("rnr_1", "shell", "app") or "")
    assert "workspace" in (auth.refusal("rnr_1", "read_file", "docs") or "")
    assert "session's runner" in (auth.refusal("rnr_2", "read_file", "app") or "")


def test_no_runner_no_manifest_means_nothing_and_fixtures_are_unlimited() -> None:
    assert freeze(manifest(["*"]), runner_id=None, workspace="app", offered={}).refusal(
        "r", "noop", "app"
    )
    assert Authorization().refusal("r", "noop", "app") is not None
    assert freeze(None, runner_id="r", workspace="app", offered=OFFERED).refusal("r", "noop", "app")
    fixture = freeze(manifest([], fixture=True), runner_id=None, workspace=None, offered={})
    assert fixture.any
    assert fixture.refusal("other", "shell", "anywhere") is None
