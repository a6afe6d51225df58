"""The ACP agents a runner can host, how each is started, and which are installed here.

A :class:`Preset` knows its program and npm package, the variables that take its model's
base URL, API key and model name, its own telemetry and update switches (always off),
and its pitfalls (docs/agents.md): ``IS_SANDBOX`` is never passed to Claude Code (it
makes Claude Code running as root exit at once), Gemini always gets ``-m`` (without it
its model router spends a minute on a classifier request), and ``codex-acp`` runs as its
native binary (killing the node shim orphans it) and needs bubblewrap nested in the
runner's sandbox, which :meth:`Preset.problem` checks before it is offered.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tether.config import AcpAgentConfig, Config
from tether.runner.agents.launch import resolve_program

__all__ = ["PRESETS", "Installed", "Preset", "installed", "version_of"]


@dataclass(frozen=True, slots=True)
class Preset:
    """One hosted ACP agent (see the module docstring)."""

    id: str
    label: str
    program: str
    """The command looked up on PATH when ``agents.<id>.command`` is empty."""
    package: str
    """Its npm package (read for the version)."""
    key_env: str
    """The variable the program reads its API key from."""
    base_url_env: str
    model_env: str
    """The variable that names the model ("" when it is an argument)."""
    default_model: str
    write_home: Callable[[Path], None]
    """Writes the program's settings into a fresh session home."""

    def argv(self, program: Path, cfg: AcpAgentConfig) -> list[str]:
        argv = [str(program)]
        if self.id == "gemini":
            argv += ["--acp", "-m", cfg.model or self.default_model]
        elif self.id == "codex-acp":
            from tether.runner.agents.codex import ACP_SAFE_OVERRIDES, codex_overrides

            settings = dict(cfg.settings)
            if cfg.model:
                settings.setdefault("model", cfg.model)
            argv += codex_overrides(settings, ACP_SAFE_OVERRIDES)
        return argv + list(cfg.args)

    def env(self, cfg: AcpAgentConfig, home: str) -> dict[str, str]:
        """The preset's own variables, given the session home as the agent sees it."""
        env: dict[str, str] = {"HOME": home}
        source = cfg.key_env or self.key_env
        key = os.environ.get(source) if source else None
        if key:
            # Codex's model provider names its own variable (its ``env_key``): keep the name
            env[source if self.id == "codex-acp" else self.key_env] = key
        if cfg.base_url and self.base_url_env:
            env[self.base_url_env] = cfg.base_url
        model = cfg.model or self.default_model
        if self.model_env and model:
            env[self.model_env] = model
        if self.id == "claude":
            env.update(
                {
                    "CLAUDE_CONFIG_DIR": f"{home}/.claude",
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "DISABLE_AUTOUPDATER": "1",
                    "DISABLE_TELEMETRY": "1",
                    "DISABLE_ERROR_REPORTING": "1",
                }
            )
        elif self.id == "gemini":
            env.update({"GEMINI_CLI_NO_RELAUNCH": "true", "TMPDIR": f"{home}/.tmp"})
        elif self.id == "codex-acp":
            env["CODEX_HOME"] = home
        return env

    def resolve(self, cfg: AcpAgentConfig) -> Path | None:
        """The program to run, or None when it is not installed."""
        if not (cfg.command or self.program):
            return None
        program = resolve_program(cfg.command or self.program)
        if program is None or self.id != "codex-acp" or program.suffix != ".js":
            return program
        return _native_codex_acp(program)


def _claude_home(home: Path) -> None:
    (home / ".claude").mkdir(mode=0o700, exist_ok=True)


def _gemini_home(home: Path) -> None:
    settings = {
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    (home / ".gemini").mkdir(mode=0o700, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (home / ".tmp").mkdir(mode=0o700, exist_ok=True)


def _nothing(home: Path) -> None:
    return None  # its settings are passed as arguments


def _native_codex_acp(shim: Path) -> Path | None:
    """``codex-acp``'s native binary beside its node shim (killing the shim orphans it)."""
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    for parent in shim.parents:
        if parent.name == "node_modules":
            native = parent / "@zed-industries" / f"codex-acp-linux-{arch}" / "bin" / "codex-acp"
            return native if native.is_file() else None
    return None


PRESETS: dict[str, Preset] = {
    p.id: p
    for p in (
        Preset(
            id="claude",
            label="Claude Code",
            program="claude-agent-acp",
            package="@agentclientprotocol/claude-agent-acp",
            key_env="ANTHROPIC_API_KEY",
            base_url_env="ANTHROPIC_BASE_URL",
            model_env="ANTHROPIC_MODEL",
            default_model="",
            write_home=_claude_home,
        ),
        Preset(
            id="gemini",
            label="Gemini CLI",
            program="gemini",
            package="@google/gemini-cli",
            key_env="GEMINI_API_KEY",
            base_url_env="GOOGLE_GEMINI_BASE_URL",
            model_env="",
            default_model="gemini-2.5-flash",
            write_home=_gemini_home,
        ),
        Preset(
            id="acp",
            label="ACP agent",
            program="",
            package="",
            key_env="",
            base_url_env="",
            model_env="",
            default_model="",
            write_home=_nothing,
        ),
        Preset(
            id="codex-acp",
            label="Codex (ACP)",
            program="codex-acp",
            package="@zed-industries/codex-acp",
            key_env="OPENAI_API_KEY",
            base_url_env="",
            model_env="",
            default_model="",
            write_home=_nothing,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Installed:
    """A preset as found on this machine."""

    id: str
    label: str
    program: Path | None
    version: str | None
    problem: str | None
    """Why it cannot be offered here (None: it can)."""


def version_of(program: Path, package: str) -> str | None:
    """The version in the ``package.json`` of ``package`` that holds ``program``."""
    if not package:
        return None
    names = {package, package + "-linux-x64", package + "-linux-arm64"}
    for parent in program.parents:
        manifest = parent / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                return None
            if data.get("name") in names:
                return str(data.get("version") or "") or None
        if parent.name == "node_modules":
            break
    return None


def installed(config: Config, nested_ok: Callable[[], bool]) -> list[Installed]:
    """Every hosted agent (Codex, then the ACP presets), with its program and version here
    and why it cannot run, if so."""
    codex_cfg = config.agents.codex
    codex = resolve_program(codex_cfg.command)
    found = [
        Installed(
            "codex",
            "Codex",
            codex,
            version_of(codex, "@openai/codex") if codex else None,
            None if codex else f"not installed ({codex_cfg.command} is not on PATH)",
        )
    ]
    for preset in PRESETS.values():
        cfg = config.agents.preset(preset.id)
        program = preset.resolve(cfg)
        problem = None
        version = version_of(program, preset.package) if program is not None else None
        if program is None and not (cfg.command or preset.program):
            problem = "not configured (set agents.acp.command)"
        elif program is None:
            problem = f"not installed ({cfg.command or preset.program} is not on PATH)"
        elif preset.id == "codex-acp" and not nested_ok():
            problem = (
                "needs bubblewrap inside the runner's sandbox, which this machine does not "
                "allow (a runner running as root): run the runner as an ordinary user, or set "
                "runner.sandbox = 'off' so that codex-acp's own sandbox is the one"
            )
        found.append(Installed(preset.id, preset.label, program, version, problem))
    return found
