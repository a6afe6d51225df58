"""A service's secrets (API keys, channel secrets): which variables its config reads
them from, and the file beside the config that systemd reads them from
(``EnvironmentFile=``), written only by ``tether service install --env NAME`` and only
with values every systemd reads one way (:func:`~tether.cli.service_units.environment_file_line`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tether.cli.service_units import Service, environment_file_line
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.config import Config

__all__ = ["carried_secrets", "env_file", "names_in_env_file", "secret_names", "write_env_file"]


def secret_names(config: Config, service: Service) -> list[str]:
    """The environment variables ``service`` reads secrets from under ``config``."""
    names: list[str] = []
    agents = config.agents
    if service == "gateway":
        if agents.openai.model:
            names.append(agents.openai.api_key_env)
        names += [w.secret_env for w in config.channels.webhook.values()]
        feishu = config.channels.feishu
        if feishu.app_id:
            names.append(feishu.app_secret_env)
            if feishu.mode == "webhook":
                names += [feishu.verification_token_env, feishu.encrypt_key_env]
    else:
        from tether.runner.agents.presets import PRESETS

        names += agents.codex.env
        for preset in PRESETS.values():
            hosted = agents.preset(preset.id)
            names += [hosted.key_env or preset.key_env, *hosted.env]
    return sorted({n for n in names if n})


def env_file(config: Config, service: Service) -> Path:
    """The file of the service's secrets, beside its config (systemd reads it)."""
    return config.config_path / f"{service}.env"


def _assigned(line: str) -> str | None:
    """The name a line of an environment file assigns (None: a comment or a blank)."""
    name, sep, _ = line.strip().partition("=")
    return name.strip() if sep and name and not name.startswith(("#", ";")) else None


def names_in_env_file(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {n for n in map(_assigned, path.read_text(encoding="utf-8").splitlines()) if n}


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in the file; every other line stays as it is (a value written there
    by hand, in systemd's quoting, included)."""
    old = (
        path.read_text(encoding="utf-8").splitlines()
        if path.exists()
        else [
            "# Secrets of a tether service, one NAME=value per line (read by systemd:",
            "# EnvironmentFile=). `tether service install SERVICE --env NAME` sets one.",
        ]
    )
    kept = [line for line in old if _assigned(line) not in values]
    lines = [*kept, *(environment_file_line(k, v) for k, v in sorted(values.items()))]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def carried_secrets(names: list[str]) -> dict[str, str]:
    """The values of ``names`` in this environment (each must be set and writable)."""
    values: dict[str, str] = {}
    for name in names:
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"--env {name}: {name} is not set in this environment")
        environment_file_line(name, value)  # refused here, before anything is written
        values[name] = value
    return values
