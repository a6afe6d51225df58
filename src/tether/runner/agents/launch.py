"""How a hosted agent process is started: its program, sandbox and environment.

The agent runs in the runner's bubblewrap sandbox, as shell commands do: system
directories read-only, the workspace writable, every protected path covered, the
runner's HOME an empty tmpfs, and only two more things visible: the agent's program
(read-only: the ``node_modules`` it lives in, or its directory) and the session's own
agent home, writable, mounted for that session alone at :data:`AGENT_HOME` (or, for a
session given the user's own CODEX_HOME, at that directory's path). It shares the
runner's network unless ``runner.agent_network`` is false. Its environment is scrubbed:
``PATH`` and the locale, its home, and the variables its ``agents.*.env`` names.

:func:`codex_sandbox_mode` decides whether Codex's own sandbox can work inside ours
(nested user namespaces: usually yes for an unprivileged runner, no for root).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tether.config import Config
from tether.errors import ConfigError, PolicyDenied
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import (
    PROBE_TIMEOUT,
    SYSTEM_DIRS,
    Bind,
    SandboxInfo,
    SandboxSpec,
    command,
)
from tether.security.paths import expand_home, is_within

__all__ = [
    "AGENT_HOME",
    "Launch",
    "agent_home",
    "agent_launch",
    "base_env",
    "codex_launch",
    "codex_sandbox_mode",
    "nested_sandbox_ok",
    "resolve_program",
]

AGENT_HOME = "/tether/agent-home"
"""Where a session's private agent home is mounted inside the sandbox (never under /tmp:
Codex refuses to put its helpers under a temporary directory)."""
_LOCALE = ("LANG", "LC_ALL", "TERM", "TZ")
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)


@dataclass
class Launch:
    """A ready command line: ``pass_fds`` must stay open until the process is started
    (then :meth:`close_fds`)."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: list[int]
    workspace: str
    """The workspace's path as the agent sees it."""
    home: str
    """The agent home's path as the agent sees it."""

    def close_fds(self) -> None:
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pass_fds = []


def resolve_program(name: str) -> Path | None:
    """The agent program's real path (``name`` is a path or on PATH), or None."""
    found = shutil.which(os.path.expanduser(name))
    return Path(os.path.realpath(found)) if found is not None else None


def _program_root(program: Path) -> str | None:
    """What to mount for the program: its ``node_modules``, else its directory (None when
    it lies in the system directories, which are mounted anyway)."""
    text = str(program)
    if any(is_within(text, d) for d in SYSTEM_DIRS if os.path.isdir(d) and d != "/etc"):
        return None
    for parent in program.parents:
        if parent.name == "node_modules":
            return str(parent)
    return str(program.parent)


def _open_dir(path: str) -> int:
    return os.open(path, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def codex_launch(
    config: Config,
    *,
    program: Path,
    workspace: Path,
    home: Path,
    shared_home: bool,
    sandbox: SandboxInfo,
    protected: ProtectedPaths,
    runner_home: Path,
) -> Launch:
    """The command line of ``codex app-server`` for one session (see the module docstring)."""
    from tether.runner.agents.codex import codex_overrides

    codex = config.agents.codex
    inner_home = str(home) if shared_home else AGENT_HOME
    env = base_env(codex.env)
    argv = [str(program), "app-server", *codex_overrides(dict(codex.settings))]
    if sandbox.bwrap_path is None:
        env.update({"HOME": str(home), "CODEX_HOME": str(home)})
    else:
        env.update({"HOME": inner_home, "CODEX_HOME": inner_home})
    return agent_launch(
        config,
        argv=argv,
        env=env,
        program=program,
        workspace=workspace,
        home=home,
        inner_home=inner_home,
        sandbox=sandbox,
        protected=protected,
        runner_home=runner_home,
    )


def base_env(names: list[str]) -> dict[str, str]:
    """An agent's environment before its own settings: ``PATH``, the locale and the
    runner's variables ``names`` (never ``IS_SANDBOX``, which breaks Claude Code)."""
    env = {name: os.environ[name] for name in _LOCALE if name in os.environ}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    for name in names:
        if name in os.environ and name != "IS_SANDBOX":
            env[name] = os.environ[name]
    return env


def agent_home(sandbox: SandboxInfo, home: Path) -> str:
    """The session's agent home as the agent sees it."""
    return AGENT_HOME if sandbox.bwrap_path is not None else str(home)


def agent_launch(
    config: Config,
    *,
    argv: list[str],
    env: dict[str, str],
    program: Path,
    workspace: Path,
    home: Path,
    sandbox: SandboxInfo,
    protected: ProtectedPaths,
    runner_home: Path,
    inner_home: str = AGENT_HOME,
    mounts: list[str] | None = None,
) -> Launch:
    """``argv`` wrapped in the runner's sandbox (see the module docstring): the program
    read-only, the workspace and the session's agent ``home`` (at ``inner_home``)
    writable, and ``mounts`` read-only (a protected path among them is refused). With
    ``runner.sandbox = off`` (the operator's explicit choice) it runs as is."""
    if sandbox.status == "unavailable":
        raise PolicyDenied(
            f"refusing to run a hosted agent without a sandbox ({sandbox.reason})",
            data={"reason": "sandbox_unavailable"},
        )
    if sandbox.bwrap_path is None:
        return Launch(argv, env, [], str(workspace), str(home))
    fds: list[int] = []
    try:
        binds: list[Bind] = []
        root = _program_root(program)
        if root is not None:
            fds.append(_open_dir(root))
            binds.append(Bind(root, writable=False, fd=fds[-1]))
        for extra in mounts or []:
            path = os.path.realpath(expand_home(extra, runner_home))
            if protected.protected_name(path) is not None:
                raise ConfigError(f"agent mount {extra!r} is a protected path")
            fds.append(_open_dir(path))
            binds.append(Bind(path, writable=False, fd=fds[-1]))
        fds.append(_open_dir(str(workspace)))
        binds.append(Bind(str(workspace), writable=True, fd=fds[-1]))
        fds.append(_open_dir(str(home)))
        binds.append(Bind(inner_home, writable=True, fd=fds[-1]))
        spec = SandboxSpec(
            binds=binds,
            cwd=str(workspace),
            # the session's own home is mounted for it even where it lies in a protected place
            hidden=[loc for loc in protected.locations() if loc.path != str(home)],
            home=str(runner_home),
            network=config.runner.agent_network,
        )
        wrapped, _ = command(argv, spec, bwrap=sandbox.bwrap_path)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Launch(wrapped, env, fds, str(workspace), inner_home)


@functools.lru_cache(maxsize=4)
def _nested_ok(bwrap: str, network: bool) -> bool:
    inner = [bwrap, "--ro-bind", "/", "/", "--unshare-user", "--unshare-net", "true"]
    argv, _ = command(inner, SandboxSpec(binds=[], cwd="/", network=network), bwrap=bwrap)
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def nested_sandbox_ok(config: Config, sandbox: SandboxInfo) -> bool:
    """Whether a program's own bubblewrap sandbox can run inside the runner's (nested
    user namespaces: usually yes for an unprivileged runner, no for root)."""
    bwrap = sandbox.bwrap_path or shutil.which(config.runner.bwrap)
    if bwrap is None:
        return False
    if sandbox.bwrap_path is None:
        return True  # unsandboxed runner: the program's own sandbox runs directly
    return _nested_ok(bwrap, config.runner.agent_network)


def codex_sandbox_mode(config: Config, sandbox: SandboxInfo) -> str:
    """``codex`` (its read-only sandbox, nested in ours) or ``external`` (ours only, every
    command asks), as ``agents.codex.sandbox`` says; ``auto`` probes once."""
    wanted = config.agents.codex.sandbox
    if wanted != "auto":
        return wanted
    return "codex" if nested_sandbox_ok(config, sandbox) else "external"


def user_codex_home(config: Config, runner_home: Path) -> Path:
    """The user's own CODEX_HOME (``agents.codex.user_home``), which must exist."""
    path = Path(expand_home(config.agents.codex.user_home, runner_home))
    if not path.is_dir():
        raise ConfigError(
            f"agents.codex.share_home is set but {path} is not a directory (run `codex` once)"
        )
    return path
