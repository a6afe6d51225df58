"""The `tether` command as a user meets it: commands that start without loading the gateway."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.process import SCALE, GatewayProcess, tether_env

HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "aiohttp",
    "cryptography",
    "jwt",
    "pydantic",
    "prometheus_client",
    "tether.app",
    "tether.gateway",
    "tether.ledger",
)


@pytest.mark.parametrize(
    "args",
    [
        ("ping",),
        ("runs", "list"),
        ("sessions", "list"),
        ("runners", "list"),
        ("version",),
        ("--help",),
        ("runs", "start", "--help"),
    ],
    ids=" ".join,
)
def test_commands_that_talk_to_the_gateway_load_nothing_heavy(
    gateway: GatewayProcess, args: tuple[str, ...]
) -> None:
    """What a command imports, read from ``python -X importtime`` (a structural check)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tether", *args],
        env=tether_env(gateway.home),
        capture_output=True,
        text=True,
        timeout=30 * SCALE,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", out.stderr, re.M))
    assert "tether.cli.main" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == [], f"`tether {' '.join(args)}` imports {heavy}"
