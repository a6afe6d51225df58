"""The runner's identity on disk: ``<config dir>/runner.json`` (0600).

Holds the gateway URL, the runner id and name, its credential, the gateway's public key
pinned at enrolment, and the workspaces given at enrolment. The credential never
appears in logs (see ``tether.security.redaction``).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from tether.errors import ConfigError

__all__ = ["IDENTITY_FILE", "RunnerIdentity", "load_identity", "save_identity"]

IDENTITY_FILE = "runner.json"


class RunnerIdentity(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    gateway_url: str
    runner_id: str
    name: str
    credential: str
    gateway_public_key: str
    workspaces: dict[str, str] = msgspec.field(default_factory=dict)


def load_identity(config_dir: Path) -> RunnerIdentity:
    path = config_dir / IDENTITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"this machine is not enrolled ({path} is missing): run `tether runner enroll "
            "--gateway URL --code CODE` with a code from `tether runners add NAME`"
        ) from None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others; run `chmod 600 {path}`")
    try:
        return msgspec.json.decode(data, type=RunnerIdentity)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path} is damaged: {exc}; enrol again") from exc


def save_identity(config_dir: Path, identity: RunnerIdentity) -> Path:
    """Write atomically with mode 0600 (the directory is created 0700)."""
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = config_dir / IDENTITY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(identity)) + b"\n")
    tmp.replace(path)
    return path
