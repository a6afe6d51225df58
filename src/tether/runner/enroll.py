"""``tether runner enroll``: trade a one-time code for this machine's runner credential."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import msgspec

from tether.config import is_loopback_host
from tether.errors import ConnectionClosed, PolicyDenied, Unauthorized
from tether.protocol.runners import Enrolled, EnrolRequest
from tether.runner.identity import IDENTITY_FILE, RunnerIdentity, save_identity
from tether.transport.client import http_url

__all__ = ["enroll", "previous_workspaces"]


def previous_workspaces(config_dir: Path) -> dict[str, str]:
    """The workspaces of the identity already in ``config_dir`` ({} when there is none).

    Enrolling again without ``--workspace`` keeps them. A damaged file has none.
    """
    try:
        data = (config_dir / IDENTITY_FILE).read_bytes()
        return dict(msgspec.json.decode(data, type=RunnerIdentity).workspaces)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return {}


async def enroll(
    gateway_url: str,
    code: str,
    config_dir: Path,
    *,
    workspaces: dict[str, str] | None = None,
    insecure: bool = False,
    version: str = "",
    timeout: float = 15.0,
) -> tuple[RunnerIdentity, Path]:
    """POST the code to ``/enroll``, then save the identity (credential + pinned key)."""
    base = http_url(gateway_url)
    host = urlsplit(base).hostname or ""
    if base.startswith("http://") and not insecure and not is_loopback_host(host):
        raise PolicyDenied(
            f"refusing to enrol over plain http to {host!r}: use https:// (or --insecure)"
        )
    body = msgspec.json.encode(EnrolRequest(code=code, version=version))
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(
                f"{base}/enroll", data=body, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConnectionClosed(f"cannot reach the gateway at {base}: {exc}") from exc
    if status == 401:
        raise Unauthorized("the gateway refused the code: unknown, already used or expired")
    if status != 200:
        raise ConnectionClosed(
            f"enrolment failed: HTTP {status}: {raw[:200].decode(errors='replace')}"
        )
    enrolled = msgspec.json.decode(raw, type=Enrolled)
    identity = RunnerIdentity(
        gateway_url=base,
        runner_id=enrolled.runner_id,
        name=enrolled.name,
        credential=enrolled.credential,
        gateway_public_key=enrolled.gateway_public_key,
        workspaces=dict(workspaces or {}),
    )
    return identity, save_identity(config_dir, identity)
