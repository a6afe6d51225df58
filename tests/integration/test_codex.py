"""Codex (the real `codex app-server`) hosted on a real runner, driven through a real
gateway against the scripted model server: approvals, declines, file changes, questions,
interrupts, steering, gateway and runner restarts, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import runs as r
from tests.support.agents import MODEL_KEY, codex_config, codex_exec, descendants, escalated
from tests.support.model_server import ModelServer
from tests.support.people import free_port, kinds_of, open_request, resolve
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli
from tether.protocol.access import RequestListParams
from tether.protocol.methods import REQUEST_LIST, RUN_CANCEL
from tether.protocol.runs import RunCancelParams
from tether.transport.client import RpcClient, connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

pytestmark = pytest.mark.timeout(180)


def stack(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    server: ModelServer,
    tmp_path: Path,
    *args: str,
    runner_extra: str = "",
    **gateway_env: str,
) -> tuple[GatewayProcess, RunnerProcess]:
    env = {
        "TETHER_RUNS__DEFAULT_RUNNER": "box",
        "TETHER_RUNS__DEFAULT_WORKSPACE": "app",
        "TETHER_RUNS__DEFAULT_MODE": "ask",
        **gateway_env,
    }
    gw = make_gateway(*args, **env)
    config = codex_config(tmp_path / "runner.toml", server, extra=runner_extra)
    runner_env = {
        "TETHER_CONFIG": str(config),
        "SCRIPTED_API_KEY": MODEL_KEY,
        "TETHER_RUNNER__RECONNECT_MAX_DELAY": "1",  # back soon after a gateway restart
    }
    runner = make_runner(gw, env=runner_env)
    return gw, runner


async def test_a_command_approved_by_a_person_runs_in_the_workspace(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model(
        [escalated("echo agent-was-here > proof.txt && cat proof.txt"), {"text": "Wrote it."}]
    )
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "create proof.txt", agent="codex")
        run_id = created.run.id
        request = await open_request(c, run_id, timeout=60)
        assert request.plan["tool"] == "shell"
        assert request.plan["commands"] == ["echo agent-was-here > proof.txt", "cat proof.txt"]
        await resolve(c, request.id, "allow_once")
        run = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", (run, [k for _, k, _ in events])
    assert run.output == "Wrote it."
    assert (home / "ws-box" / "proof.txt").read_text() == "agent-was-here\n"
    kinds = [k for _, k, _ in events]
    assert kinds.count("approval.requested") == 1
    succeeded = kinds_of(events, "tool.call.succeeded")
    assert succeeded
    assert "agent-was-here" in succeeded[0]["result"]["output"]


async def test_a_declined_command_does_not_run_and_the_model_is_told(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([escalated("touch nope.txt"), {"text": "Understood, I did not."}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "make nope.txt", agent="codex")).run.id
        request = await open_request(c, run_id, timeout=60)
        await resolve(c, request.id, "deny")
        run = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert run.state == "succeeded"
    assert run.output == "Understood, I did not."
    assert not (home / "ws-box" / "nope.txt").exists()
    decided = kinds_of(events, "tool.call.decided")
    assert [d["decision"] for d in decided] == ["deny"]
    assert not kinds_of(events, "tool.call.succeeded")
    told = [i for i in server.requests[-1]["input"] if i.get("type") == "function_call_output"]
    assert "rejected" in told[-1]["output"]


async def test_policy_allows_what_it_allows_without_asking_anyone(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    """Mode ``auto``: policy allows the command itself; the decision is recorded as the
    rule's, and the run never waits for a person."""
    server = await model([escalated("echo fine > auto.txt"), {"text": "ok"}])
    gw, _runner = stack(
        make_gateway, make_runner, server, tmp_path, TETHER_RUNS__DEFAULT_MODE="auto"
    )
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "go", agent="codex")).run.id
        run = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", run
    assert (home / "ws-box" / "auto.txt").read_text() == "fine\n"
    assert not kinds_of(events, "approval.requested")
    assert [d["by"] for d in kinds_of(events, "tool.call.decided")] == ["rule"]


async def test_the_agent_sees_neither_the_runner_credential_nor_another_sessions_home(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    gw, runner = None, None
    server = await model([{"text": "first"}])
    gw, runner = stack(make_gateway, make_runner, server, tmp_path)
    credential = runner.config_dir
    async with await connect_ipc(gw.socket) as c:
        first = (await r.start(c, "hello", agent="codex")).run
        assert (await r.wait_state(c, first.id, timeout=60)).state == "succeeded"
        other_home = home / "data" / "agents" / "codex" / first.session_id / "home"
        assert other_home.is_dir()
        probe = (
            f"ls {credential} 2>&1; ls {other_home} 2>&1; echo key=$SCRIPTED_API_KEY; "
            "echo home=$CODEX_HOME"
        )
        server.script += [escalated(probe), {"text": "looked"}]
        second = (await r.start(c, "look around", agent="codex", steer=False)).run
        assert second.session_id != first.session_id
        await resolve(c, (await open_request(c, second.id, timeout=60)).id, "allow_once")
        run = await r.wait_state(c, second.id, timeout=60)
        events = await r.events(c, second.id)
    assert run.state == "succeeded"
    output = kinds_of(events, "tool.call.succeeded")[0]["result"]["output"]
    assert output.count("No such file or directory") == 2, output
    assert "home=/tether/agent-home" in output
    assert MODEL_KEY not in str(events)  # the agent has its key; nothing it sends shows it
    assert re.search(r"key=(\[redacted\])?\n", output), output


async def test_a_crashed_agent_fails_the_turn_and_the_next_message_starts_it_again(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([escalated("echo never"), {"text": "back again"}])
    gw, runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run = (await r.start(c, "start", agent="codex")).run
        await open_request(c, run.id, timeout=60)  # codex is running and waiting for us
        agents = [pid for pid, cmd in descendants(runner.pid) if "app-server" in cmd]
        assert agents, descendants(runner.pid)
        for pid in agents:  # bwrap, the npm shim and codex: one dies with another
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        failed = await r.wait_state(c, run.id, timeout=60)
        assert failed.state == "failed"
        assert failed.reason == "agent_crashed"
        assert "codex exited unexpectedly" in (failed.output or "")
        server.script.insert(0, {"text": "back again"})
        again = (await r.start(c, "are you there?", agent="codex", session_id=run.session_id)).run
        done = await r.wait_state(c, again.id, timeout=60)
    assert done.state == "succeeded", done
    assert done.output == "back again"
    # the same thread was resumed: the model sees the earlier message
    assert "start" in str(server.requests[-1]["input"])


async def until(client: RpcClient, run_id: str, kind: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while kind not in await r.kinds(client, run_id):
        assert asyncio.get_running_loop().time() < deadline, f"no {kind} in run {run_id}"
        await asyncio.sleep(0.05)


def exactly_once(events: list[tuple[int, str, Any]]) -> None:
    """No event of the run was recorded twice (the same kind and payload)."""
    seen = [(k, json.dumps(p, sort_keys=True)) for _, k, p in events if k != "agent.usage"]
    dupes = {e for e in seen if seen.count(e) > 1}
    assert not dupes, dupes
    assert [s for s, _, _ in events] == list(range(1, len(events) + 1))


async def test_a_permission_open_across_a_gateway_kill_is_asked_once_and_runs_once(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    listen = ("--listen", f"127.0.0.1:{free_port()}")  # the runner comes back to it
    server = await model([escalated("echo once >> marks.txt"), {"text": "done once"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path, *listen)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "mark it", agent="codex")).run.id
        before = await open_request(c, run_id, timeout=60)
    gw.kill()
    gw2 = make_gateway(*listen, TETHER_RUNS__DEFAULT_MODE="ask")
    async with await connect_ipc(gw2.socket) as c:
        after = await open_request(c, run_id, timeout=60)
        assert (after.id, after.call_id) == (before.id, before.call_id)
        await resolve(c, after.id, "allow_once")
        done = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert (done.state, done.output) == ("succeeded", "done once"), done
    assert (home / "ws-box" / "marks.txt").read_text() == "once\n"
    assert len(kinds_of(events, "approval.requested")) == 1
    assert len(kinds_of(events, "tool.call.succeeded")) == 1
    exactly_once(events)


async def test_the_turn_goes_on_while_the_gateway_is_down_and_nothing_is_lost_or_doubled(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    listen = ("--listen", f"127.0.0.1:{free_port()}")
    server = await model(
        [
            escalated("echo before-the-outage"),
            {"delay": 2.0, "text": "written while the gateway was away"},
        ]
    )
    gw, _runner = stack(
        make_gateway, make_runner, server, tmp_path, *listen, TETHER_RUNS__DEFAULT_MODE="auto"
    )
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "work", agent="codex")).run.id
        await until(c, run_id, "tool.call.succeeded")
    gw.kill()  # codex is now waiting 2 s for the model; its answer comes while we are gone
    await asyncio.sleep(3.0)
    gw2 = make_gateway(*listen, TETHER_RUNS__DEFAULT_MODE="auto")
    async with await connect_ipc(gw2.socket) as c:
        done = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert (done.state, done.output) == ("succeeded", "written while the gateway was away")
    messages = [p["text"] for p in kinds_of(events, "agent.message")]
    assert messages == ["written while the gateway was away"]
    assert len(kinds_of(events, "tool.call.succeeded")) == 1
    exactly_once(events)


async def test_a_runner_restart_is_told_and_the_next_message_resumes_the_thread(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([escalated("echo never-runs"), {"text": "resumed fine"}])
    gw, runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run = (await r.start(c, "remember the word kumquat", agent="codex")).run
        await open_request(c, run.id, timeout=60)
        runner.terminate()
        runner.start()
        failed = await r.wait_state(c, run.id, timeout=20)  # told at once, not after a timeout
        assert (failed.state, failed.reason) == ("failed", "runner_restarted"), failed
        assert "resumes" in (failed.output or "")
        # the run's end closes its request right after it is recorded (a moment later)
        for _ in range(int(50 * SCALE)):
            if not (await c.call(REQUEST_LIST, RequestListParams(run_id=run.id))).requests:
                break
            await asyncio.sleep(0.1)
        assert not (await c.call(REQUEST_LIST, RequestListParams(run_id=run.id))).requests
        again = (await r.start(c, "what was the word?", session_id=run.session_id)).run
        done = await r.wait_state(c, again.id, timeout=60)
    assert (done.state, done.output) == ("succeeded", "resumed fine"), done
    assert "kumquat" in json.dumps(server.requests[-1]["input"])


async def test_stop_interrupts_the_turn(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([{"delay": 8, "text": "too late"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "think long", agent="codex")).run.id
        for _ in range(600):
            if server.requests:
                break
            await asyncio.sleep(0.05)
        await c.call(RUN_CANCEL, RunCancelParams(run_id=run_id))
        done = await r.wait_state(c, run_id, timeout=30)
        kinds = await r.kinds(c, run_id)
    assert done.state == "cancelled", done
    assert "run.stop_escalated" not in kinds  # codex stopped when asked, within the grace


async def test_input_during_a_turn_steers_it(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([{"delay": 2, "text": "first thoughts"}, {"text": "took the steer"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run = (await r.start(c, "start something", agent="codex")).run
        for _ in range(600):
            if server.requests:
                break
            await asyncio.sleep(0.05)
        steered = await r.start(c, "also mention pineapples", session_id=run.session_id)
        assert steered.disposition == "steered"
        done = await r.wait_state(c, run.id, timeout=60)
    assert (done.state, done.output) == ("succeeded", "took the steer"), done
    assert "pineapples" in json.dumps(server.requests[-1]["input"])


PATCH = """*** Begin Patch
*** Add File: hello.txt
+hello from codex
*** End Patch
"""


async def test_a_file_change_is_approved_and_applied(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([{"custom": "apply_patch", "input": PATCH}, {"text": "patched"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "add hello.txt", agent="codex")).run.id
        request = await open_request(c, run_id, timeout=60)
        assert request.plan["tool"] == "apply_patch"
        assert request.plan["paths"] == ["hello.txt"]
        await resolve(c, request.id, "allow_once")
        done = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert (done.state, done.output) == ("succeeded", "patched"), done
    assert (home / "ws-box" / "hello.txt").read_text() == "hello from codex\n"
    changes = kinds_of(events, "tool.call.succeeded")[0]["result"]["changes"]
    assert [c["path"] for c in changes] == ["hello.txt"]


async def test_a_question_from_codex_is_answered_by_a_person(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    question = {
        "questions": [
            {
                "id": "db",
                "header": "Database",
                "question": "Which database?",
                "options": [
                    {"label": "postgres", "description": "the server"},
                    {"label": "sqlite", "description": "a file"},
                ],
            }
        ]
    }
    server = await model([{"tool": "request_user_input", "args": question}, {"text": "noted"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "set up storage", agent="codex")).run.id
        asked = await open_request(c, run_id, timeout=60)
        assert (asked.kind, asked.summary) == (
            "question",
            "Which database? (postgres, sqlite, or something else)",
        )
        await resolve(c, asked.id, answer="sqlite")
        done = await r.wait_state(c, run_id, timeout=60)
    assert (done.state, done.output) == ("succeeded", "noted"), done
    assert "sqlite" in json.dumps(server.requests[-1]["input"])


@pytest.fixture
def user_codex_home() -> Any:
    """A person's own CODEX_HOME (not under /tmp: Codex refuses temporary directories)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="tether-codex-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_a_thread_moves_between_the_codex_cli_and_a_chat_session(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    model: Any,
    home: Path,
    tmp_path: Path,
    user_codex_home: Path,
) -> None:
    server = await model(
        [
            {"text": "noted: kiwi"},  # the terminal
            {"text": "hello from the chat"},  # the session's first run
            {"text": "the word was kiwi"},  # the session, continuing the terminal's thread
            {"text": "back in the terminal"},  # the terminal, continuing the chat's thread
        ]
    )
    workspace = home / "ws-box"
    workspace.mkdir(exist_ok=True)
    thread = await codex_exec(user_codex_home, server, workspace, "remember the word kiwi")
    gw, _runner = stack(
        make_gateway,
        make_runner,
        server,
        tmp_path,
        runner_extra=f'share_home = true\nuser_home = "{user_codex_home}"',
        TETHER_RUNS__DEFAULT_MODE="auto",
    )
    async with await connect_ipc(gw.socket) as c:
        first = (await r.start(c, "hello", agent="codex")).run
        assert (await r.wait_state(c, first.id, timeout=60)).state == "succeeded"
        attached = run_cli(
            gw.home, "sessions", "attach", first.session_id, "--codex-thread", thread
        )
        assert attached.returncode == 0, attached.stderr
        assert thread in attached.stdout
        second = (await r.start(c, "what was the word?", session_id=first.session_id)).run
        done = await r.wait_state(c, second.id, timeout=60)
    assert (done.state, done.output) == ("succeeded", "the word was kiwi"), done
    assert "remember the word kiwi" in json.dumps(server.requests[2]["input"])
    shown = run_cli(gw.home, "sessions", "show", first.session_id)
    assert f"codex resume {thread}" in shown.stdout, shown.stdout
    await codex_exec(user_codex_home, server, workspace, "and now?", resume=thread)
    assert "what was the word?" in json.dumps(server.requests[3]["input"])


async def test_stop_while_an_approval_waits_closes_it_and_nothing_runs(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([escalated("touch stopped.txt"), {"text": "should not get here"}])
    gw, _runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "make a file", agent="codex")).run.id
        request = await open_request(c, run_id, timeout=60)
        await c.call(RUN_CANCEL, RunCancelParams(run_id=run_id))
        done = await r.wait_state(c, run_id, timeout=30)
        left = await c.call(REQUEST_LIST, RequestListParams(run_id=run_id))
        events = await r.events(c, run_id)
    assert done.state == "cancelled", done
    assert not left.requests
    resolved = kinds_of(events, "approval.resolved")
    assert [(x["request"], x["decision"]) for x in resolved] == [(request.id, "cancelled")]
    assert not (home / "ws-box" / "stopped.txt").exists()
    assert len(server.requests) == 1  # codex was not told to go on


async def test_moving_a_session_off_codex_stops_its_process(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model([{"text": "hi"}])
    gw, runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run = (await r.start(c, "hello", agent="codex")).run
        assert (await r.wait_state(c, run.id, timeout=60)).state == "succeeded"

        def agents() -> list[int]:
            return [pid for pid, cmd in descendants(runner.pid) if "app-server" in cmd]

        assert agents()  # kept for the session's next turn
        moved = run_cli(gw.home, "sessions", "set", run.session_id, "--agent", "operator")
        assert moved.returncode == 0, moved.stderr
        for _ in range(300):
            if not agents():
                break
            await asyncio.sleep(0.05)
    assert not agents(), descendants(runner.pid)
