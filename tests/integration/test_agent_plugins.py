"""Agent plugins found through real entry points by a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.support import runs as r
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tether.protocol.methods import RUNNER_LIST
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

PLUGIN = """
import json

from tether.agents import Manifest, Outcome, Permissions
from tether.errors import TetherError
from tether.protocol.events import AgentMessage


class Echo:
    def __init__(self):
        self.name = "echo"
        self.manifest = Manifest(id="echo", version="0.3.0", label="Echo", description="says it back")

    async def run(self, ctx):
        await ctx.emit(AgentMessage(text="echo: " + ctx.input))
        return Outcome(state="succeeded", output="echo: " + ctx.input)


class Caller:
    # calls what each input line says: TOOL|JSON[|WORKSPACE[|RUNNER]]; says each outcome

    def __init__(self):
        self.name = "caller"
        self.manifest = Manifest(
            id="caller", version="1", label="Caller", permissions=Permissions(tools=["read"])
        )

    async def run(self, ctx):
        said = []
        for line in ctx.input.splitlines():
            tool, args, workspace, runner = (line.split("|") + ["", ""])[:4]
            try:
                await ctx.call_tool(
                    runner=runner, tool=tool, args=json.loads(args), workspace=workspace
                )
                said.append("ok")
            except TetherError as exc:
                said.append(exc.code)
        return Outcome(state="succeeded", output=" ".join(said))


class Greedy(Echo):
    def __init__(self):
        super().__init__()
        self.manifest = {"id": "greedy", "version": "1", "label": "x",
                         "permissions": {"tools": ["*"], "sudo": True}}
"""


async def online(client: RpcClient, names: set[str]) -> None:
    for _ in range(400):
        listed = await client.call(RUNNER_LIST, Empty())
        if names <= {x.name for x in listed.runners if x.online}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"runners {names} not online")


def install_plugin(root: Path) -> str:
    """A distribution on disk with `tether.agents` entry points; returns a PYTHONPATH."""
    (root / "echo_plugin.py").write_text(PLUGIN)
    info = root / "echo_plugin-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(
        "[tether.agents]\n"
        "echo = echo_plugin:Echo\n"
        "caller = echo_plugin:Caller\n"
        "greedy = echo_plugin:Greedy\n"
        "missing = echo_plugin_gone:Agent\n"
    )
    return os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)


async def test_plugins_load_or_are_skipped_with_a_reason(
    make_gateway: MakeGateway, home: Path, tmp_path: Path
) -> None:
    gw = make_gateway(PYTHONPATH=install_plugin(tmp_path))
    listed = run_cli(home, "--json", "agents", "list")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    agents = {a["id"]: a for a in found["agents"]}
    assert {"operator", "script", "echo"} <= set(agents)
    assert agents["echo"]["source"] == "echo_plugin:Echo"
    assert agents["echo"]["version"] == "0.3.0"
    skipped = {s["name"]: s["reason"] for s in found["skipped"]}
    assert "sudo" in skipped["greedy"]  # an unknown permission key is refused
    assert skipped["missing"].startswith("import failed: ModuleNotFoundError")
    text = run_cli(home, "agents", "list").stdout
    assert "skipped plugins:" in text
    assert "echo_plugin:Echo" in text
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "hi there", agent="echo")
        done = await r.wait_state(c, created.run.id)
        assert (done.state, done.output) == ("succeeded", "echo: hi there")


async def test_a_tool_outside_the_runs_authorization_is_refused(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, tmp_path: Path
) -> None:
    gw = make_gateway(
        PYTHONPATH=install_plugin(tmp_path),
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
    )
    spaces = {"app": home / "ws-app", "other": home / "ws-other"}
    for path in spaces.values():
        path.mkdir()
    (spaces["app"] / "a.txt").write_text("a")
    make_runner(gw, workspaces=spaces)
    make_runner(gw, name="spare")
    script = "\n".join(
        [
            'read_file|{"path": "a.txt"}',  # inside: a read, in the session's workspace
            'shell|{"command": "touch pwned"}',  # the manifest allows reads only
            'write_file|{"path": "w.txt", "content": "x"}',
            'read_file|{"path": "a.txt"}|other',  # another workspace of the same runner
            "noop|{}|app|spare",  # another runner
        ]
    )
    async with await connect_ipc(gw.socket) as c:
        await online(c, {"box", "spare"})
        created = await r.start(c, script, agent="caller")
        done = await r.wait_state(c, created.run.id)
        assert (
            done.output
            == "ok capability_denied capability_denied capability_denied capability_denied"
        )
        events = await r.events(c, created.run.id)
    decided = [p for _, k, p in events if k == "tool.call.decided"]
    assert [(d["decision"], d["by"]) for d in decided[1:]] == [("deny", "authorization")] * 4
    assert "manifest does not allow the tool 'shell'" in decided[1]["rule"]
    assert not any(k == "approval.requested" for _, k, _ in events)  # nothing was asked
    assert not (spaces["app"] / "pwned").exists()
