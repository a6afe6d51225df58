"""A sandboxed shell cannot reach tether's own secrets, or become the gateway's admin.

The review's attack: under `tether up` (gateway and runner on one machine, the same
user), one `shell` call read the admin token and the signing key, connected to
`gateway.sock` as admin (same uid) and called `runner.add`. Here `tether up` runs as an
ordinary user with a login session's limits and default directories, with the workspace
a project under HOME and HOME itself, and every attack is tried through a real call.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import desktop_runner, refusal, snapshot, tool
from tests.support.process import UpProcess
from tests.support.users import LoginUser
from tether.protocol.methods import RUNNER_LIST
from tether.protocol.system import Empty
from tether.transport.client import connect_ws

SOCKET_ATTACK = """\
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":1,"role":"admin"}}\\n')
    print("CONNECTED", s.recv(4096))
except OSError as e:
    print("refused", e)
"""
"""Written into the workspace and run with the sandbox's python3."""

ATTACKS = [
    ("read the admin token", "cat {data}/admin.token"),
    ("read the signing key", "cat {data}/gateway.key"),
    ("read the ledger", "head -c 64 {data}/tether.db"),
    ("read the local runner's credential", "cat {data}/local-runner/runner.json"),
    ("list the data dir", "ls -laR {data}"),
    ("read gateway.json", "cat {runtime}/gateway.json"),
    ("connect to the gateway socket as admin", "python3 {workspace}/attack.py {socket}"),
    (
        "read the user's tether config dir",
        "ls -la {home}/.config/tether; cat {home}/.config/tether/*",
    ),
    (
        "search the whole visible file system",
        "find / -xdev \\( -name admin.token -o -name gateway.key -o -name runner.json "
        "-o -name gateway.sock -o -name 'tether.db*' \\) 2>/dev/null",
    ),
    ("read through /proc of another process", "cat /proc/1/environ /proc/*/cmdline | tr '\\0' ' '"),
]


@pytest.fixture(params=["project", "home"])
def up(request: pytest.FixtureRequest, user_home: Path, login: LoginUser) -> Iterator[UpProcess]:
    """`tether up` as the login user; workspace = a project under HOME, or HOME itself
    (the latter with XDG_RUNTIME_DIR set, as a desktop session has)."""
    project = user_home / "code" / "app"
    project.mkdir(parents=True)
    (project / "README.md").write_text("hello\n")
    env: dict[str, str] = {}
    if request.param == "home":
        runtime = user_home / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        spaces = {"home": user_home}
    else:
        spaces = {"app": project}
    login.own(user_home)
    proc = UpProcess(user_home, spaces, env=env, user=login)
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.stop()


def _secrets(up: UpProcess) -> list[str]:
    data = up.data_dir
    credential = json.loads((data / "local-runner" / "runner.json").read_text())["credential"]
    key_body = (data / "gateway.key").read_text().splitlines()[1]
    return [up.admin_token, credential, key_body, "SQLite format 3", "CONNECTED"]


async def test_a_sandboxed_shell_reaches_no_tether_secret(up: UpProcess, user_home: Path) -> None:
    secrets = _secrets(up)
    runtime = Path(up.info["socket"]).parent
    workspace = next(iter(up.workspaces.values()))
    (workspace / "attack.py").write_text(SOCKET_ATTACK)
    outside = user_home / "code"
    before = snapshot(outside, skip=tuple(Path(p) for p in up.workspaces.values()))
    async with await connect_ws(up.ws_url, token=up.admin_token, role="admin") as c:
        for name, template in ATTACKS:
            command = template.format(
                data=up.data_dir,
                runtime=runtime,
                home=user_home,
                socket=up.info["socket"],
                workspace=workspace,
            )
            result = await tool(c, "local", "shell", command=command)
            assert result["sandboxed"] is True
            leaked = [s for s in secrets if s in result["output"]]
            assert not leaked, f"{name}: {result['output'][:2000]}"
        listing = await c.call(RUNNER_LIST, Empty())
    assert [r.name for r in listing.runners] == ["local"]
    assert snapshot(outside, skip=tuple(Path(p) for p in up.workspaces.values())) == before


@pytest.mark.parametrize("up", ["home"], indirect=True)
async def test_file_tools_refuse_tether_dirs_inside_a_home_workspace(
    up: UpProcess, user_home: Path
) -> None:
    data = up.data_dir.relative_to(user_home)
    token_before = up.admin_token
    async with await connect_ws(up.ws_url, token=up.admin_token, role="admin") as c:
        for name, args in [
            ("read_file", {"path": f"{data}/admin.token"}),
            ("read_file", {"path": f"{data}/local-runner/runner.json"}),
            ("write_file", {"path": f"{data}/admin.token", "content": "pwned"}),
            ("write_file", {"path": ".config/tether/config.toml", "content": "[runner]\n"}),
            ("list_dir", {"path": str(data)}),
            ("shell", {"command": "true", "cwd": str(data)}),
        ]:
            error = await refusal(c, "local", name, **args)
            assert (error.code, error.data.get("reason")) == ("policy_denied", "denied_path"), (
                name,
                args,
                error.message,
            )
        listed = await tool(c, "local", "list_dir", path=str(data.parent))
        assert "tether" not in [e["name"] for e in listed["entries"]]
        found = await tool(c, "local", "glob", pattern="**/admin.token")
        assert found["paths"] == []
        grep = await tool(c, "local", "grep", pattern=token_before[:20])
        assert grep["matches"] == []
    assert up.admin_token == token_before
    assert not (user_home / ".config" / "tether" / "config.toml").exists()


async def test_a_toolchain_under_home_works_read_only_and_nothing_else_shows(
    user_home: Path, login: LoginUser
) -> None:
    """`[runner] readonly_paths` mounts toolchains under HOME (a venv here, and a file);
    the rest of HOME stays private, and nothing mounted read-only can be changed."""
    tool_dir = user_home / ".venvs" / "tool"
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--copies", "--without-pip", str(tool_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    site = next(tool_dir.glob("lib/python3*/site-packages"))
    (site / "hello_tool.py").write_text("GREETING = 'hello from a toolchain under HOME'\n")
    (user_home / ".gitconfig").write_text("[user]\n\tname = Sandboxed Tester\n")
    (user_home / "diary.txt").write_text("PRIVATE DIARY\n")
    (user_home / ".config" / "tether").mkdir(parents=True)
    (user_home / ".config" / "tether" / "config.toml").write_text(
        '[runner]\nreadonly_paths = ["~/.venvs/tool", "~/.gitconfig", "~/.not-there"]\n'
    )
    project = user_home / "project"
    project.mkdir()
    with desktop_runner(login, user_home, {"app": project}) as (gateway, _runner):
        async with await connect_ws(gateway.ws_url, token=gateway.admin_token, role="admin") as c:
            command = (
                f"{tool_dir}/bin/python -c 'import hello_tool; print(hello_tool.GREETING)'; "
                "git config --global user.name; "
                f"touch {tool_dir}/x 2>&1 | grep -o 'Read-only file system'; "
                "(echo changed >> ~/.gitconfig) 2>&1 | grep -o 'Read-only file system'; "
                "cat ~/diary.txt 2>&1 | grep -o 'No such file or directory'"
            )
            result = await tool(c, "laptop", "shell", command=command)
    assert result["output"].splitlines() == [
        "hello from a toolchain under HOME",
        "Sandboxed Tester",
        "Read-only file system",
        "Read-only file system",
        "No such file or directory",
    ], result["output"]
    assert not (tool_dir / "x").exists()
    assert (user_home / ".gitconfig").read_text() == "[user]\n\tname = Sandboxed Tester\n"
