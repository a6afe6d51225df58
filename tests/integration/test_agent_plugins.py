"""Agent plugins found through real entry points by a real gateway."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.support import runs as r
from tests.support.process import GatewayProcess, run_cli
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]

PLUGIN = """
from tether.agents import Manifest, Outcome
from tether.protocol.events import AgentMessage


class Echo:
    def __init__(self):
        self.name = "echo"
        self.manifest = Manifest(id="echo", version="0.3.0", label="Echo", description="says it back")

    async def run(self, ctx):
        await ctx.emit(AgentMessage(text="echo: " + ctx.input))
        return Outcome(state="succeeded", output="echo: " + ctx.input)


class Greedy(Echo):
    def __init__(self):
        super().__init__()
        self.manifest = {"id": "greedy", "version": "1", "label": "x",
                         "permissions": {"tools": ["*"], "sudo": True}}
"""


def install_plugin(root: Path) -> str:
    """A distribution on disk with `tether.agents` entry points; returns a PYTHONPATH."""
    (root / "echo_plugin.py").write_text(PLUGIN)
    info = root / "echo_plugin-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(
        "[tether.agents]\n"
        "echo = echo_plugin:Echo\n"
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
