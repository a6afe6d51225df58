"""``tether runner enroll``: trade a one-time code for this machine's runner credential."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec

from tether.config import is_loopback_host
from tether.errors import ConnectionClosed, PolicyDenied, Unauthorized
from tether.protocol.runners import Enrolled, EnrolRequest
from tether.runner.identity import RunnerIdentity, save_identity

__all__ = ["enroll", "http_base"]


def http_base(url: str) -> str:
    """``ws(s)://host:port[/ws]`` or ``http(s)://host:port`` -> ``http(s)://host:port``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"not a gateway URL: {url!r} (expected http://, https://, ws:// or wss://)"
        )
    path = parts.path.rstrip("/")
    path = path.removesuffix("/ws")
    return urlunsplit((scheme, parts.netloc, path, "", ""))


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
    base = http_base(gateway_url)
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
