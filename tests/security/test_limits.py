"""Floods against a real gateway running as an ordinary user with a login session's limits:
half-open HTTP requests (slowloris) and enrolment-code guessing. The gateway keeps
serving ``/healthz`` and authenticated clients, sheds and counts the hostile load, and
its memory stays within a multiple of its own baseline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import resource
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import unit
from tests.support.process import GatewayProcess, run_cli
from tests.support.users import LOGIN_NOFILE, LoginUser, login_user
from tether.protocol.methods import PING
from tether.protocol.system import PingParams
from tether.transport.client import connect_ws

FLOOD = 1050
"""More half-open connections than a login session's 1,024 descriptors."""
RSS_FACTOR = 2.0
"""The gateway's memory under a flood stays below this multiple of its own baseline."""


@dataclasses.dataclass(frozen=True)
class _HardLimited(LoginUser):
    """A login user whose *hard* open-file limit is 1,024 too (the gateway cannot raise it)."""

    def popen_kwargs(self, nofile: int = LOGIN_NOFILE) -> dict[str, Any]:
        kwargs = super().popen_kwargs(nofile)

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        kwargs["preexec_fn"] = limits
        return kwargs


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert m, text
    return int(m.group(1))


class RssSampler:
    """Samples a process's resident memory every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_kib(self.pid))
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = _rss_kib(self.pid)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _warm_up(gw: GatewayProcess) -> int:
    """Exercise the paths the test will use, then return the baseline RSS (KiB)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(gw.url + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(gw.url + "/metrics") as resp:
                assert resp.status == 200
    async with await connect_ws(gw.url, token=gw.admin_token, role="admin") as c:
        await c.call(PING, PingParams())
    await asyncio.sleep(0.2)
    return _rss_kib(gw.pid)


async def _half_open(port: int, held: list[asyncio.StreamWriter]) -> bool:
    """Open a connection and send a request that never ends; keep it open."""
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), unit(2)
        )
    except (OSError, TimeoutError):
        return False
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    held.append(writer)
    return True


def _room_for_the_flood() -> None:
    """The test process itself holds every flood connection: give it the descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * FLOOD if hard == resource.RLIM_INFINITY else min(hard, 4 * FLOOD)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _flood(port: int, count: int, held: list[asyncio.StreamWriter]) -> int:
    opened = 0
    for start in range(0, count, 50):  # bursts of 50, as fast as the loop allows
        batch = [_half_open(port, held) for _ in range(min(50, count - start))]
        opened += sum(await asyncio.gather(*batch))
    return opened


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


async def _serves(gw: GatewayProcess) -> None:
    """``/healthz`` answers and an authenticated client completes ``hello`` and a ping."""
    timeout = aiohttp.ClientTimeout(total=unit(5))
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(gw.url + "/healthz") as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    client = await asyncio.wait_for(connect_ws(gw.url, token=gw.admin_token, role="admin"), unit(5))
    async with client:
        assert client.hello.role == "admin"
        await asyncio.wait_for(client.call(PING, PingParams()), unit(5))


def _gateway(home: Path, user: LoginUser, **env: str) -> GatewayProcess:
    user.own(home)
    gw = GatewayProcess(home, user=user, env=env)
    gw.start()
    return gw


@pytest.mark.parametrize("limit", ["soft", "hard"], ids=["login-limits", "hard-limit-1024"])
async def test_slowloris_does_not_take_the_gateway_down(home: Path, limit: str) -> None:
    _room_for_the_flood()
    user = login_user()
    if limit == "hard":
        user = _HardLimited(**dataclasses.asdict(user))
    gw = _gateway(home, user)
    held: list[asyncio.StreamWriter] = []
    try:
        baseline = await _warm_up(gw)
        port = int(gw.url.rsplit(":", 1)[1])
        with RssSampler(gw.pid) as rss:
            opened = await _flood(port, FLOOD, held)
            assert opened >= FLOOD // 2
            # served while the half-open requests are held, and while a second wave comes in
            wave: asyncio.Task[int] = asyncio.create_task(_flood(port, FLOOD, held))
            for _ in range(5):
                await _serves(gw)
            await wave
            await _serves(gw)
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            metrics = await resp.text()
        shed = _metric(metrics, "tether_http_connections_shed_total")
        assert shed >= FLOOD / 2, metrics
        assert _metric(metrics, "tether_http_connections_pending") <= 256
        print(f"RSS baseline {baseline} KiB, peak {rss.peak} KiB under the slowloris")
        assert rss.peak < RSS_FACTOR * baseline, (rss.peak, baseline)
    finally:
        for writer in held:
            writer.transport.abort()
        gw.stop()
    log = gw.stderr()
    assert "shedding TCP connections" in log
    if limit == "hard":
        assert "open-file limit is below what the config needs" in log
    else:
        assert "raised the open-file limit" in log


async def test_half_open_requests_are_closed_at_the_header_deadline(home: Path) -> None:
    gw = _gateway(home, login_user(), TETHER_LIMITS__HEADER_TIMEOUT="0.5")
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # the gateway closes it (EOF) well before the test's own bound
        assert await asyncio.wait_for(reader.read(), unit(5)) == b""
        writer.close()
        await _serves(gw)
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            metrics = await resp.text()
        assert _metric(metrics, "tether_http_connections_shed_total", reason="header_timeout") >= 1
    finally:
        gw.stop()


async def _post_enroll(
    url: str, code: str, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], str]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(url + "/enroll", json={"code": code}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


async def test_enrolment_guessing_is_rate_limited(home: Path) -> None:
    gw = _gateway(home, login_user())
    try:
        baseline = await _warm_up(gw)
        statuses: list[int] = []
        retry_after: list[str] = []
        sem = asyncio.Semaphore(16)

        async def guess(i: int, source: str) -> None:
            async with sem:
                status, headers, _ = await _post_enroll(gw.url, f"WRONG{i:011d}", source)
            statuses.append(status)
            if status == 429:
                retry_after.append(headers.get("Retry-After", ""))

        with RssSampler(gw.pid) as rss:
            # one source guessing fast, then many sources (the total limit)
            await asyncio.gather(*(guess(i, "127.0.0.1") for i in range(300)))
            one_source = list(statuses)
            await asyncio.gather(*(guess(i, f"127.0.1.{i % 200 + 1}") for i in range(600)))
        assert one_source.count(401) <= 12  # the burst, and not much more
        assert one_source.count(429) >= 250
        assert statuses.count(429) >= 600
        assert all(v.isdigit() and int(v) >= 1 for v in retry_after)
        print(f"RSS baseline {baseline} KiB, peak {rss.peak} KiB under the enrolment flood")
        assert rss.peak < RSS_FACTOR * baseline, (rss.peak, baseline)
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            metrics = await resp.text()
        assert _metric(metrics, "tether_rate_limited_total", endpoint="enroll", scope="source") > 0
        assert _metric(metrics, "tether_rate_limited_total", endpoint="enroll", scope="total") > 0
        # a real runner still enrols once it waits as told
        added = run_cli(gw.home, "--json", "runners", "add", "late", user=gw.user)
        assert added.returncode == 0, added.stderr
        code = json.loads(added.stdout)["code"]
        for _ in range(10):
            status, headers, body = await _post_enroll(gw.url, code, "127.0.2.1")
            if status != 429:
                break
            await asyncio.sleep(float(headers["Retry-After"]))
        assert status == 200, body
    finally:
        gw.stop()
