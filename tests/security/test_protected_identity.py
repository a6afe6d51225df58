"""Protected directories are known by what they are, not by their current name.

The review's attack: with the workspace = HOME, a sandboxed `mv vault other` exposed
`other/...` to `read_file`, and `mv .config .config2` then `read_file
.config2/tether/runner.json` returned the runner's credential. Here the runner runs as an
ordinary user with default directories (its identity in `~/.config/tether`), the
workspace is its HOME and `~/vault` is a configured hidden path. Renames from inside the
sandbox must fail; renames from outside it (the user's own shell) must change nothing
about what the tools can reach.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import desktop_runner, refusal, tool
from tests.support.process import GatewayProcess, RunnerProcess
from tests.support.users import LoginUser
from tether.transport.client import connect_ws

MOVES = [("vault", "other"), (".config", ".config2"), (".ssh", ".ssh2")]


@pytest.fixture
def laptop(user_home: Path, login: LoginUser) -> Iterator[tuple[GatewayProcess, RunnerProcess]]:
    (user_home / ".config" / "tether").mkdir(parents=True)
    (user_home / ".config" / "tether" / "config.toml").write_text(
        '[runner]\nhidden_paths = ["~/vault"]\n'
    )
    (user_home / "vault").mkdir()
    (user_home / "vault" / "secret.txt").write_text("VAULT SECRET\n")
    (user_home / ".ssh").mkdir()
    (user_home / ".ssh" / "id_ed25519").write_text("SSH PRIVATE KEY\n")
    with desktop_runner(login, user_home, {"home": user_home}) as both:
        yield both


def _secrets(user_home: Path, runner: RunnerProcess) -> list[str]:
    identity = json.loads((runner.config_dir / "runner.json").read_text())
    secret = identity["credential"].split(".", 1)[1]
    return ["VAULT SECRET", "SSH PRIVATE KEY", secret]


async def test_renames_inside_the_sandbox_fail_and_reveal_nothing(
    laptop: tuple[GatewayProcess, RunnerProcess], user_home: Path
) -> None:
    gateway, runner = laptop
    secrets = _secrets(user_home, runner)
    async with await connect_ws(gateway.ws_url, token=gateway.admin_token, role="admin") as c:
        moves = "; ".join(f"mv ~/{a} ~/{b}" for a, b in MOVES)
        reads = "cat ~/other/secret.txt ~/.config2/tether/runner.json ~/.ssh2/id_ed25519"
        result = await tool(c, "laptop", "shell", command=f"{moves}; {reads}; ls -la ~")
        assert result["sandboxed"] is True
        assert result["output"].count("Device or resource busy") == len(MOVES), result["output"]
        assert not [s for s in secrets if s in result["output"]], result["output"]
        for a, b in MOVES:
            assert (user_home / a).is_dir()
            assert not (user_home / b).exists()
        for path in ("other/secret.txt", "vault/secret.txt", ".config/tether/runner.json"):
            error = await refusal(c, "laptop", "read_file", path=path)
            assert error.code in ("policy_denied", "tool_failed"), error.message


async def test_renames_outside_the_sandbox_keep_everything_protected(
    laptop: tuple[GatewayProcess, RunnerProcess], user_home: Path
) -> None:
    gateway, runner = laptop
    secrets = _secrets(user_home, runner)
    async with await connect_ws(gateway.ws_url, token=gateway.admin_token, role="admin") as c:
        await tool(c, "laptop", "noop")  # the runner has seen every protected path by now
        for a, b in MOVES:  # the user's own shell, outside any sandbox
            (user_home / a).rename(user_home / b)
        try:
            for path in ("other/secret.txt", ".config2/tether/runner.json", ".ssh2/id_ed25519"):
                error = await refusal(c, "laptop", "read_file", path=path)
                assert (error.code, error.data["reason"]) == ("policy_denied", "denied_path"), (
                    path,
                    error.message,
                )
            error = await refusal(c, "laptop", "write_file", path="other/new.txt", content="x")
            assert error.data["reason"] == "denied_path"
            listed = await tool(c, "laptop", "list_dir", path=".")
            names = {e["name"] for e in listed["entries"]}
            assert names.isdisjoint({"other", ".ssh2"}), names  # .config2 itself is no secret
            inner = await tool(c, "laptop", "list_dir", path=".config2")
            assert "tether" not in {e["name"] for e in inner["entries"]}
            found = await tool(c, "laptop", "glob", pattern="**/*.txt")
            assert "other/secret.txt" not in found["paths"]
            for secret in secrets:
                grep = await tool(c, "laptop", "grep", pattern=secret[:16])
                assert grep["matches"] == [], grep
            reads = "cat ~/other/secret.txt ~/.config2/tether/runner.json ~/.ssh2/id_ed25519"
            result = await tool(c, "laptop", "shell", command=f"{reads}; ls -laR ~/other")
            assert not [s for s in secrets if s in result["output"]], result["output"]
            assert not (user_home / "other" / "new.txt").exists()
        finally:
            for a, b in MOVES:
                (user_home / b).rename(user_home / a)
