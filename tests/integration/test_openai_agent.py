"""The openai agent through the real SDK against a scripted model server, with a real
gateway and runner: allowed, approved and denied tool calls, a 429, a broken stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import runs as r
from tests.support.model_server import ModelServer
from tests.support.people import free_port, kinds_of, open_request, resolve
from tests.support.process import GatewayProcess, RunnerProcess
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]
KEY = "sk-test-" + "k" * 40


def gateway_for(
    make_gateway: MakeGateway,
    server: ModelServer,
    tmp_path: Path,
    _args: tuple[str, ...] = (),
    **env: str,
) -> GatewayProcess:
    config = tmp_path / "model.toml"
    config.write_text(
        f'[agents.openai]\nmodel = "scripted-1"\nbase_url = "{server.url}"\n'
        'api_key_env = "TEST_MODEL_KEY"\nmax_retries = 2\n'
    )
    return make_gateway(
        *_args,
        TETHER_CONFIG=str(config),
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        TEST_MODEL_KEY=KEY,
        **env,
    )


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_a_tool_calling_loop_with_policy_and_a_person_in_it(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model(
        [
            {"tool": "read_file", "args": {"path": "README.md"}},  # a read: allowed
            {"tool": "shell", "args": {"command": "echo approved > ok.txt"}},  # asks: approved
            {"tool": "write_file", "args": {"path": "no.txt", "content": "x"}},  # asks: denied
            {"status": 429, "retry_after": "0"},  # the SDK waits and retries
            {"text": "All done."},
        ]
    )
    gw = gateway_for(make_gateway, server, tmp_path)
    make_runner(gw)
    workspace = home / "ws-box"
    (workspace / "README.md").write_text("the readme says hi")
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "tidy up the workspace", agent="openai")
        shell = await open_request(c, created.run.id)
        assert shell.plan["commands"] == ["echo approved > ok.txt"]
        await resolve(c, shell.handle, "allow_once")
        write = await open_request(c, created.run.id)
        assert write.plan["tool"] == "write_file"
        await resolve(c, write.handle, "deny")
        done = await r.wait_state(c, created.run.id, timeout=60)
        assert (done.state, done.output) == ("succeeded", "All done.")
        events = await r.events(c, created.run.id)
    assert (workspace / "ok.txt").read_text() == "approved\n"
    assert not (workspace / "no.txt").exists()

    first, *_, last = server.requests
    assert len(server.requests) == 5
    assert first["model"] == "scripted-1"
    assert first["stream"] is True
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"read_file", "shell", "write_file"} <= offered
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    results = tool_messages(last)
    assert "the readme says hi" in results[0]
    assert json.loads(results[1])["exit_code"] == 0
    assert results[2].startswith("error (approval_denied)")
    assert "did not run" in results[2]  # the model is told, not shown a result
    assert kinds_of(events, "agent.usage")[0]["input_tokens"] == 100
    assert "".join(d["text"] for d in kinds_of(events, "agent.delta")) == "All done."
    assert [d["decision"] for d in kinds_of(events, "tool.call.decided")] == [
        "allow",
        "allow",
        "deny",
    ]


async def test_a_broken_stream_is_retried_and_a_bad_key_said_plainly(
    make_gateway: MakeGateway, model: Any, tmp_path: Path
) -> None:
    server = await model([{"break": True}, {"text": "recovered"}, {"status": 401}])
    gw = gateway_for(make_gateway, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "hello", agent="openai")
        done = await r.wait_state(c, created.run.id, timeout=60)
        assert (done.state, done.output) == ("succeeded", "recovered")
        statuses = [s["text"] for s in kinds_of(await r.events(c, created.run.id), "agent.status")]
        assert any("retrying" in s for s in statuses)
        refused = await r.start(c, "again", agent="openai", session_id=created.run.session_id)
        done = await r.wait_state(c, refused.run.id, timeout=60)
        assert (done.state, done.reason) == ("failed", "model_unauthorized")
        assert "TEST_MODEL_KEY" in (done.output or "")
    assert KEY not in json.dumps(server.requests)  # the key travels in a header only


async def test_a_run_resumes_from_its_transcript_after_a_gateway_kill(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    call = {"tool": "shell", "args": {"command": "echo once >> once.txt"}}
    server = await model(
        [
            {"tool": "read_file", "args": {"path": "README.md"}},  # round 1: recorded
            call,  # round 2: asks; the gateway dies while it waits
            call,  # after the restart the model is asked again and asks the same
            {"text": "finished"},
        ]
    )
    (home / "ws-box").mkdir(exist_ok=True)
    (home / "ws-box" / "README.md").write_text("readme")
    listen = ("--listen", f"127.0.0.1:{free_port()}")  # the runner comes back to it
    gw = gateway_for(make_gateway, server, tmp_path, _args=listen)
    make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "append once", agent="openai")
        before = await open_request(c, created.run.id)
    gw.kill()
    gw2 = gateway_for(make_gateway, server, tmp_path, _args=listen)
    async with await connect_ipc(gw2.socket) as c:
        after = await open_request(c, created.run.id, timeout=40)
        assert after.id == before.id  # the same request: nobody is asked twice
        await resolve(c, after.handle, "allow_once")
        done = await r.wait_state(c, created.run.id, timeout=60)
        assert (done.state, done.output, done.attempts) == ("succeeded", "finished", 2)
        events = await r.events(c, created.run.id)
    assert (home / "ws-box" / "once.txt").read_text() == "once\n"  # ran exactly once
    assert len(kinds_of(events, "approval.requested")) == 1
    resumed = server.requests[2]  # the first call after the restart
    assert "readme" in tool_messages(resumed)[0]  # round 1 came back from the transcript
    assert [m["role"] for m in resumed["messages"]] == ["system", "user", "assistant", "tool"]


async def test_model_errors_end_the_run_with_a_reason(
    make_gateway: MakeGateway, model: Any, tmp_path: Path
) -> None:
    server = await model([{"status": 404}, {"status": 503}, {"status": 503}, {"status": 503}])
    gw = gateway_for(make_gateway, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        missing = await r.start(c, "hello", agent="openai")
        done = await r.wait_state(c, missing.run.id, timeout=60)
        assert (done.state, done.reason) == ("failed", "model_not_found")
        assert "no model 'scripted-1'" in (done.output or "")
        failing = await r.start(c, "again", agent="openai", session_id=missing.run.session_id)
        done = await r.wait_state(c, failing.run.id, timeout=60)
        assert (done.state, done.reason) == ("failed", "model_error")
        assert "HTTP 503" in (done.output or "")
    assert len(server.requests) == 4  # 404 once; 503 tried three times (max_retries = 2)


async def test_steering_reaches_the_model_between_rounds(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, tmp_path: Path
) -> None:
    server = await model([{"tool": "noop", "args": {"echo": "x"}}, {"text": "ok, both"}])
    server.delay = 0.6  # the first call is still running when the steering arrives
    gw = gateway_for(make_gateway, server, tmp_path)
    make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "first thing", agent="openai")
        await r.wait_state(c, created.run.id, {"running"})
        steered = await r.start(
            c, "and a second thing", session_id=created.run.session_id, steer=True
        )
        assert steered.disposition == "steered"
        done = await r.wait_state(c, created.run.id, timeout=60)
        assert (done.state, done.output) == ("succeeded", "ok, both")
    users = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "user"]
    assert users == ["first thing", "and a second thing"]


async def test_a_model_that_never_answers_times_out_plainly(
    make_gateway: MakeGateway, model: Any, tmp_path: Path
) -> None:
    server = await model([{"text": "too late"}] * 3)
    server.delay = 5.0
    config = tmp_path / "slow.toml"
    config.write_text(
        f'[agents.openai]\nmodel = "m"\nbase_url = "{server.url}"\n'
        "request_timeout = 0.5\nmax_retries = 1\n"
    )
    gw = make_gateway(TETHER_CONFIG=str(config))
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "hello", agent="openai")
        done = await r.wait_state(c, created.run.id, timeout=60)
        assert (done.state, done.reason) == ("failed", "model_unreachable")
        assert "did not answer" in (done.output or "")
