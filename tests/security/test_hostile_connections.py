"""Hostile peers through the real entry points: malformed frames, oversize answers from a
runner, who may read metrics, who may use the fixture agent, and the files on disk."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, run_cli
from tests.support.scripted_runner import Reply, ScriptedRunner
from tests.support.users import login_user
from tether.errors import Forbidden
from tether.protocol.methods import RUN_CREATE
from tether.protocol.runs import RunCreateParams
from tether.transport.client import connect_ipc, connect_ws

HELLO = {"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {"protocol": [1], "role": "admin"}}
DEEP = (
    b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"payload":'
    + b"[" * 1000
    + b"]" * 1000
    + b"}}"
)
DEEP_ARGS = (
    b'{"jsonrpc":"2.0","id":3,"method":"tool.call","params":{"runner":"x","tool":"y","args":'
    + b'{"a":' * 1000
    + b"1"
    + b"}" * 1000
    + b"}}"
)
BAD_UTF8 = b'{"jsonrpc":"2.0","id":4,"method":"ping","params":{"payload":"\xff\xfe"}}'
PING = b'{"jsonrpc":"2.0","id":5,"method":"ping"}'


def _code(reply: dict[str, object]) -> str:
    error = reply["error"]
    assert isinstance(error, dict)
    return str(error["data"]["code"])


async def test_deep_nesting_and_bad_utf8_are_answered_on_the_websocket(
    gateway: GatewayProcess,
) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(gateway.ws_url, headers=headers) as ws,
    ):

        async def send(frame: bytes) -> dict[str, object]:
            await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
            msg = await asyncio.wait_for(ws.receive(), unit(5))
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            return json.loads(msg.data)

        assert "result" in await send(json.dumps(HELLO).encode())
        assert _code(await send(DEEP)) == "invalid_request"
        assert _code(await send(DEEP_ARGS)) == "invalid_request"
        assert _code(await send(BAD_UTF8)) == "parse_error"
        assert "result" in await send(PING)  # the connection is still there


async def test_deep_nesting_and_bad_utf8_are_answered_on_the_unix_socket(
    gateway: GatewayProcess,
) -> None:
    reader, writer = await asyncio.open_unix_connection(gateway.socket, limit=1 << 20)
    try:

        async def send(frame: bytes) -> dict[str, object]:
            writer.write(frame + b"\n")
            return json.loads(await asyncio.wait_for(reader.readline(), unit(5)))

        assert "result" in await send(json.dumps(HELLO).encode())
        assert _code(await send(DEEP)) == "invalid_request"
        assert _code(await send(DEEP_ARGS)) == "invalid_request"
        assert _code(await send(BAD_UTF8)) == "parse_error"
        assert "result" in await send(PING)
    finally:
        writer.close()
    assert "Traceback" not in gateway.stderr()


@pytest.mark.parametrize("factor", [1.5, 3.0], ids=["decodable", "over-the-socket-limit"])
async def test_an_oversize_answer_from_a_runner_fails_the_call_once(
    home: Path, factor: float
) -> None:
    limit = 64 * 1024
    # (a frame this small holds events of at most 32 KB inline)
    env = {
        "TETHER_LIMITS__MAX_FRAME_BYTES": str(limit),
        "TETHER_LEDGER__INLINE_PAYLOAD_BYTES": "32768",
    }
    gw = GatewayProcess(home, env=env)
    gw.start()
    big = json.dumps({"stdout": "x" * int(limit * factor)}).encode()
    runner = ScriptedRunner(gw, replies={"big": Reply(result=big)}, max_frame_bytes=limit * 8)
    try:
        await runner.start()
        async with await connect_ipc(gw.socket) as c:
            run = await r.start(c, "tool box big '{}'")
            done = await r.wait_state(c, run.run.id, timeout=30)
        assert (done.state, done.reason) == ("failed", "too_large")
        await asyncio.sleep(0.5)  # a resend would have arrived by now
        assert len(runner.executed) == 1
        assert not any(p.resend for p in runner.executed)
    finally:
        await runner.aclose()
        gw.stop()


async def test_metrics_need_a_trusted_address_or_the_token(home: Path) -> None:
    token = "metrics-token-0123456789"
    # only 127.0.0.1 is "local" here, so a request from 127.0.0.2 stands for a remote peer
    gw = GatewayProcess(
        home,
        env={
            "TETHER_GATEWAY__METRICS_NETWORKS": "127.0.0.1/32",
            "TETHER_GATEWAY__METRICS_TOKEN": token,
        },
    )
    gw.start()
    try:
        async with aiohttp.ClientSession() as local, local.get(gw.url + "/metrics") as resp:
            assert resp.status == 200
            assert "tether_build_info" in await resp.text()
        remote = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=remote) as http:
            async with http.get(gw.url + "/metrics") as resp:
                assert resp.status == 401
                assert "tether_build_info" not in await resp.text()
            wrong = {"Authorization": "Bearer nope-nope-nope-nope"}
            async with http.get(gw.url + "/metrics", headers=wrong) as resp:
                assert resp.status == 401
            good = {"Authorization": f"Bearer {token}"}
            async with http.get(gw.url + "/metrics", headers=good) as resp:
                assert resp.status == 200
            async with http.get(gw.url + "/healthz") as resp:
                assert resp.status == 200  # only metrics are guarded
    finally:
        gw.stop()
    gw2 = GatewayProcess(home, env={"TETHER_GATEWAY__METRICS_NETWORKS": "127.0.0.1/32"})
    gw2.start()
    try:
        remote = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with (
            aiohttp.ClientSession(connector=remote) as http,
            http.get(gw2.url + "/metrics") as resp,
        ):
            assert resp.status == 403
    finally:
        gw2.stop()


async def test_the_script_agent_is_for_admin_connections_only(home: Path) -> None:
    gw = GatewayProcess(home)
    gw.start()
    try:
        async with await connect_ws(gw.url, token=gw.admin_token, role="client") as client:
            with pytest.raises(Forbidden) as err:
                await client.call(RUN_CREATE, RunCreateParams(input="say hi"))
            assert "test fixture" in str(err.value)
            with pytest.raises(Forbidden):
                await client.call(RUN_CREATE, RunCreateParams(input="say hi", agent="script-once"))
        async with await connect_ws(gw.url, token=gw.admin_token, role="admin") as admin:
            ok = await admin.call(RUN_CREATE, RunCreateParams(input="say hi"))
            assert (await r.wait_state(admin, ok.run.id)).state == "succeeded"
    finally:
        gw.stop()
    # the operator may name more roles
    gw = GatewayProcess(home, env={"TETHER_RUNS__FIXTURE_ROLES": "admin,client"})
    gw.start()
    try:
        async with await connect_ws(gw.url, token=gw.admin_token, role="client") as client:
            ok = await client.call(RUN_CREATE, RunCreateParams(input="say hi"))
            assert (await r.wait_state(client, ok.run.id)).state == "succeeded"
    finally:
        gw.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private_to_the_gateway_user(home: Path) -> None:
    user = login_user()
    data = home / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - an existing, too open data dir
    user.own(home)
    gw = GatewayProcess(home, user=user)  # umask 022, as in a login session
    gw.start()
    try:
        done = await asyncio.to_thread(run_cli, home, "runs", "start", "say hi", user=user)
        assert done.returncode == 0, done.stderr
        for name in ("tether.db", "tether.db-wal", "tether.db-shm", "admin.token", "gateway.key"):
            assert _mode(data / name) == 0o600, name
        assert _mode(data) == 0o700
    finally:
        gw.stop()
    # a data dir that belongs to somebody else is refused with a clear message
    if user.switch:
        other = home / "other"
        (other / "data").mkdir(parents=True)
        os.chmod(other, 0o755)  # noqa: S103 - the gateway user may look, not own
        bad = GatewayProcess(other, user=user)
        bad.start(wait=False)
        assert bad.wait(20) == 2
        assert bad.proc is not None
        assert bad.proc.stdout is not None
        said = bad.stderr() + bad.proc.stdout.read()
        assert "belongs to uid 0" in said, said
        bad.stop()
