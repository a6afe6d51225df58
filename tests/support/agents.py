"""The real agent programs the suite drives (installed by `make agents` into
tools/agents), and the runner config that points them at a scripted model server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.support.model_server import ModelServer

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "tools" / "agents" / "node_modules" / ".bin"
MODEL_KEY = "sk-codex-" + "q" * 40
"""The agent's API key: lives on the runner only (tests check it never leaves it)."""


def program(name: str) -> Path:
    """The installed agent program, or skip (fail under CI: there it must be installed)."""
    path = AGENTS / name
    if not path.exists():
        message = f"{name} is not installed (run `make agents`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def codex_config(path: Path, server: ModelServer, *, extra: str = "") -> Path:
    """A runner config that starts Codex against ``server``."""
    codex = program("codex")
    path.write_text(
        f"""
[agents.codex]
command = "{codex}"
env = ["SCRIPTED_API_KEY"]
start_timeout = 60
{extra}

[agents.codex.settings]
model = "gpt-5.5"
model_provider = "scripted"

[agents.codex.settings."model_providers.scripted"]
name = "Scripted"
base_url = "{server.url}"
wire_api = "responses"
env_key = "SCRIPTED_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    return path


def codex_settings(server: ModelServer) -> dict[str, object]:
    """The settings :func:`codex_config` writes, for running the Codex CLI by hand."""
    return {
        "model": "gpt-5.5",
        "model_provider": "scripted",
        "model_providers.scripted": {
            "name": "Scripted",
            "base_url": server.url,
            "wire_api": "responses",
            "env_key": "SCRIPTED_API_KEY",
            "request_max_retries": 0,
            "stream_max_retries": 0,
        },
    }


async def codex_exec(
    home: Path, server: ModelServer, cwd: Path, prompt: str, *, resume: str | None = None
) -> str:
    """Run the Codex CLI as a person would in a terminal (``codex exec``, or ``codex exec
    resume THREAD``) with ``CODEX_HOME=home``; return the thread id it reports."""
    import subprocess

    from tether.runner.agents.codex import codex_overrides

    argv = [str(program("codex")), "exec"]
    if resume is not None:
        argv += ["resume", resume]
    argv += ["--json", "--skip-git-repo-check", *codex_overrides(codex_settings(server)), prompt]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "SCRIPTED_API_KEY": MODEL_KEY,
    }
    # the model server runs on this event loop: the program must not block it
    done = await asyncio.to_thread(
        subprocess.run,
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for line in done.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "thread.started":
            return str(event["thread_id"])
    raise AssertionError(f"codex exec reported no thread: {done.stdout[-2000:]}")


def escalated(command: str) -> dict[str, object]:
    """A model step: Codex's shell tool, asking to run outside its sandbox (so it asks)."""
    return {
        "tool": "exec_command",
        "args": {
            "cmd": command,
            "sandbox_permissions": "require_escalated",
            "justification": "needed for the task",
            "login": False,
        },
    }


def plain(command: str) -> dict[str, object]:
    """A model step: Codex's shell tool, inside its sandbox."""
    return {"tool": "exec_command", "args": {"cmd": command, "login": False}}


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every live descendant of ``pid``, with its command line."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    out: list[tuple[int, str]] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        out.append((child, cmd))
        todo += children.get(child, [])
    return out


def acp_test_agent(directory: Path) -> Path:
    """``tests/support/acp_agent.py`` as a program of its own in ``directory`` (run by this
    Python, whose environment :func:`acp_config` lets it read in the sandbox)."""
    import sys

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "acp-test-agent"
    source = (ROOT / "tests" / "support" / "acp_agent.py").read_text()
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return path


def acp_config(path: Path, agent: Path, *, extra: str = "") -> Path:
    """A runner config whose ``acp`` agent is ``agent`` (see :func:`acp_test_agent`)."""
    import sys

    mounts = sorted({sys.prefix, sys.base_prefix})
    path.write_text(
        f"""
[agents.acp]
command = "{agent}"
mounts = {json.dumps(mounts)}
start_timeout = 30
{extra}
"""
    )
    return path


def acp_preset_config(path: Path, agent: str, server: ModelServer, *, extra: str = "") -> Path:
    """A runner config that starts the ACP preset ``agent`` (``claude``, ``gemini``,
    ``codex-acp``) against ``server``."""
    names = {"claude": "claude-agent-acp", "gemini": "gemini", "codex-acp": "codex-acp"}
    command = program(names[agent])
    if agent == "codex-acp":
        settings = "\n".join(
            f"{json.dumps(k)} = {json.dumps(v) if not isinstance(v, dict) else _inline(v)}"
            for k, v in codex_settings(server).items()
        )
        body = f'key_env = "SCRIPTED_API_KEY"\n\n[agents.codex-acp.settings]\n{settings}\n'
    else:
        model = {"claude": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}[agent]
        body = f'base_url = "{server.root}"\nkey_env = "SCRIPTED_API_KEY"\nmodel = "{model}"\n'
    path.write_text(f'[agents.{agent}]\ncommand = "{command}"\nstart_timeout = 60\n{extra}\n{body}')
    return path


def _inline(table: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "}"
