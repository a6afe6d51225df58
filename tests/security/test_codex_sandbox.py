"""Codex as an ordinary user: its own read-only sandbox nested inside the runner's.

Run as an unprivileged user (as people run tether), bubblewrap inside bubblewrap works,
so the runner gives Codex its ``read-only`` sandbox with ``on-request`` approvals: a read
runs unasked (recorded as decided by ``agent_sandbox``), a write asks tether, and tether's
sandbox still hides every tether secret from both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import runs as r
from tests.support.agents import MODEL_KEY, codex_config, escalated, plain
from tests.support.model_server import ModelServer
from tests.support.people import kinds_of, open_request, resolve
from tests.support.process import UpProcess
from tests.support.users import LoginUser
from tether.transport.client import connect_ws

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    script: list[dict[str, Any]] = [
        plain("cat README.md"),
        escalated("echo written > out.txt"),
        {"text": "read and wrote"},
    ]
    model = await ModelServer(script).start()
    yield model
    await model.close()


@pytest.fixture
def up(server: ModelServer, user_home: Path, login: LoginUser) -> Iterator[UpProcess]:
    project = user_home / "code" / "app"
    project.mkdir(parents=True)
    (project / "README.md").write_text("hello from the readme\n")
    config = codex_config(user_home / "tether.toml", server)
    config.write_text(config.read_text() + '\n[runs]\ndefault_mode = "ask"\n')
    login.own(user_home)
    proc = UpProcess(
        user_home,
        {"app": project},
        env={"TETHER_CONFIG": str(config), "SCRIPTED_API_KEY": MODEL_KEY},
        user=login,
    )
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.stop()


async def test_reads_run_in_codexs_own_sandbox_and_writes_ask_tether(
    up: UpProcess, server: ModelServer, user_home: Path
) -> None:
    async with await connect_ws(up.ws_url, token=up.admin_token, role="admin") as c:
        run_id = (await r.start(c, "read then write", agent="codex")).run.id
        request = await open_request(c, run_id, timeout=90)
        assert request.plan["commands"] == ["echo written > out.txt"]  # only the write asked
        await resolve(c, request.id, "allow_once")
        done = await r.wait_state(c, run_id, timeout=90)
        events = await r.events(c, run_id)
    assert (done.state, done.output) == ("succeeded", "read and wrote"), done
    decided = kinds_of(events, "tool.call.decided")
    assert next(d["by"] for d in decided) == "agent_sandbox"
    assert "read-only sandbox" in decided[0]["rule"]
    outputs = [s["result"]["output"] for s in kinds_of(events, "tool.call.succeeded")]
    assert "hello from the readme" in outputs[0]
    assert (user_home / "code" / "app" / "out.txt").read_text() == "written\n"
    assert MODEL_KEY not in json.dumps([p for _, _, p in events])
