"""`tether console`: a one-time console link from a gateway that is already running (one
started with `tether gateway` or as a service prints none), for whoever asks and no one
else: the key only in the fragment, good once, never in the gateway's log."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from tests.support.people import add_user
from tests.support.process import SCALE, GatewayProcess, run_cli
from tether.protocol.methods import CONSOLE_LINK
from tether.types import Role


async def login(url: str, key: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/console/login", json={"token": key}, headers={"Origin": url}) as r,
    ):
        return r.status, await r.json()


def link_of(home: Path, *args: str) -> tuple[str, str]:
    done = run_cli(home, "--json", "console", *args)
    assert done.returncode == 0, done.stderr
    url = json.loads(done.stdout)["url"]
    parts = urlsplit(url)
    assert (parts.query, parts.fragment.startswith("token=ttc_")) == ("", True)
    return url, parts.fragment.removeprefix("token=")


async def test_a_running_gateway_gives_the_local_owner_a_link_that_works_once(
    gateway: GatewayProcess, home: Path
) -> None:
    url, key = link_of(home)
    assert url.startswith(f"{gateway.url}/#")
    status, who = await login(gateway.url, key)
    assert (status, who["role"], who["name"]) == (200, "owner", "local-admin")
    assert (await login(gateway.url, key))[0] == 401  # once only

    human = run_cli(home, "console")
    assert "logs in once, within 15 minutes" in human.stdout
    assert key not in gateway.stderr()  # never logged


async def test_a_person_gets_a_link_for_themselves_only(
    gateway: GatewayProcess, home: Path
) -> None:
    token = await add_user(gateway, "vera", "viewer")
    _, key = link_of(home, "--url", gateway.url, "--token", token)
    status, who = await login(gateway.url, key)
    assert (status, who["role"], who["name"]) == (200, "viewer", "vera")
    refused = run_cli(home, "console", "--url", gateway.url, "--token", "ttu_not-a-token")
    assert refused.returncode == 1
    assert Role.RUNNER not in CONSOLE_LINK.callers  # a runner's credential never gets one


async def test_open_hands_the_link_to_the_browser(gateway: GatewayProcess, home: Path) -> None:
    seen = home / "opened"
    fake = home / "fake-browser"
    fake.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}.part && mv {seen}.part {seen}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = run_cli(home, "--json", "console", "--open", env={"BROWSER": str(fake)})
    assert done.returncode == 0, done.stderr
    for _ in range(int(100 * SCALE)):
        if seen.exists():
            break
        await asyncio.sleep(0.1)
    assert seen.read_text() == json.loads(done.stdout)["url"]
