"""Every method a client, admin or runner may send has exactly one gateway handler."""

from __future__ import annotations

from pathlib import Path

from tether.app import Gateway
from tether.config import load_config
from tether.protocol.methods import METHODS


async def test_every_inbound_method_has_a_handler(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "TETHER_DATA_DIR": str(tmp_path / "d")}
    config = load_config(env=env, flags={"gateway": {"listen": "127.0.0.1:0"}})
    inbound = {
        name
        for name, m in METHODS.items()
        if m.callers & {"admin", "client", "runner"} and not m.is_notification
    }
    async with Gateway(config) as gateway:
        table = set(gateway.handlers.table)
    assert inbound <= table, inbound - table
    assert table <= set(METHODS)
