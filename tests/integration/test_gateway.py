"""The `tether gateway` process through its real entry points: WebSocket, Unix socket, HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import unit
from tests.support.process import GatewayProcess, run_cli
from tether.errors import Forbidden, Overloaded, Unauthorized, UnsupportedVersion
from tether.protocol.methods import GATEWAY_INFO, PING
from tether.protocol.system import Empty, PingParams
from tether.transport.client import connect_ipc, connect_ws


async def raw_ws(
    gw: GatewayProcess, session: aiohttp.ClientSession, token: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {token or gw.admin_token}"}
    return await session.ws_connect(gw.ws_url, headers=headers)


async def rpc(
    ws: aiohttp.ClientWebSocketResponse, frame: str | dict[str, object]
) -> dict[str, object]:
    await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
    msg = await asyncio.wait_for(ws.receive(), unit(5))
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


HELLO = {"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {"protocol": [1], "role": "admin"}}


async def test_ping_over_ipc_and_websocket(gateway: GatewayProcess) -> None:
    async with await connect_ipc(gateway.socket) as ipc:
        assert ipc.hello.role == "admin"
        pong = await ipc.call(PING, PingParams(payload="x"))
        assert pong.payload == "x"
        assert abs(pong.server_time - time.time()) < 60
    async with await connect_ws(gateway.url, token=gateway.admin_token, role="admin") as ws:
        pong = await ws.call(PING, PingParams())
        assert pong.version == ws.hello.server.split("/")[1]


async def test_websocket_refuses_missing_wrong_and_url_tokens(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.ws_url) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(gateway.ws_url, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401
        async with http.get(f"{gateway.ws_url}?token={gateway.admin_token}") as resp:
            assert resp.status == 401
            assert "URL" in (await resp.json())["error"]["message"]
    with pytest.raises(Unauthorized):
        await connect_ws(gateway.url, token="wrong", role="admin")


async def test_wrong_role_is_forbidden(gateway: GatewayProcess) -> None:
    async with await connect_ws(gateway.url, token=gateway.admin_token, role="client") as client:
        assert client.hello.role == "client"
        await client.call(PING, PingParams())
        with pytest.raises(Forbidden) as err:
            await client.call(GATEWAY_INFO, Empty())
        assert "gateway.info" in str(err.value)
    # the admin token may not claim the runner role
    with pytest.raises(Forbidden):
        await connect_ws(gateway.url, token=gateway.admin_token, role="runner")


async def test_gateway_info(gateway: GatewayProcess) -> None:
    async with await connect_ipc(gateway.socket) as ipc:
        info = await ipc.call(GATEWAY_INFO, Empty())
    assert info.pid == gateway.pid
    assert info.url == gateway.url
    assert {t.name: t.connections for t in info.transports}["ipc"] == 1


async def test_calls_may_follow_hello_without_waiting_for_its_answer(
    gateway: GatewayProcess, home: Path
) -> None:
    """``hello`` is handled before the next frame is read, so a client may send its
    first calls right behind it (the console does, to save a round trip); behind a
    refused ``hello`` they are refused too."""
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"payload": "p"}}
    async with aiohttp.ClientSession() as http:
        async with await raw_ws(gateway, http) as ws:
            await ws.send_str(json.dumps(HELLO))
            await ws.send_str(json.dumps(ping))
            answers = [json.loads((await asyncio.wait_for(ws.receive(), unit(5))).data)]
            answers.append(json.loads((await asyncio.wait_for(ws.receive(), unit(5))).data))
            assert [a["id"] for a in answers] == [1, 2]
            assert answers[0]["result"]["role"] == "admin"
            assert answers[1]["result"]["payload"] == "p"
        token = json.loads(
            run_cli(home, "--json", "users", "add", "vera", "--role", "viewer").stdout
        )["token"]
        async with await raw_ws(gateway, http, token) as ws:
            await ws.send_str(json.dumps({**HELLO, "params": {"protocol": [1], "role": "runner"}}))
            await ws.send_str(json.dumps(ping))
            refused = json.loads((await asyncio.wait_for(ws.receive(), unit(5))).data)
            assert refused["error"]["data"]["code"] == "forbidden"
            behind = json.loads((await asyncio.wait_for(ws.receive(), unit(5))).data)
            assert (behind["id"], behind["error"]["data"]["code"]) == (2, "invalid_request")


async def test_protocol_errors_over_websocket(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http, await raw_ws(gateway, http) as ws:
        first = await rpc(ws, {"jsonrpc": "2.0", "id": 9, "method": "ping"})
        assert first["error"]["data"]["code"] == "invalid_request"  # hello must come first
        assert (await rpc(ws, HELLO))["result"]["role"] == "admin"
        again = await rpc(ws, HELLO)
        assert again["error"]["data"]["code"] == "invalid_request"

        unknown = await rpc(ws, {"jsonrpc": "2.0", "id": 2, "method": "no.such"})
        assert unknown["id"] == 2
        assert unknown["error"]["code"] == -32601

        bad = await rpc(ws, {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"payload": 5}})
        assert bad["error"]["code"] == -32602
        assert bad["error"]["data"]["field"] == "params.payload"

        extra = await rpc(ws, {"jsonrpc": "2.0", "id": 4, "method": "ping", "params": {"nope": 1}})
        assert extra["error"]["data"]["field"] == "params.nope"

        malformed = await rpc(ws, '{"jsonrpc": "2.0", "id": 5, "method": ')
        assert malformed["error"]["code"] == -32700
        assert malformed["id"] is None

        batch = await rpc(ws, "[" + json.dumps(HELLO) + "]")
        assert batch["error"]["code"] == -32600
        assert "batch" in batch["error"]["message"]

        not_rpc = await rpc(ws, {"jsonrpc": "1.0", "id": 6, "method": "ping"})
        assert not_rpc["error"]["code"] == -32600

        await ws.send_bytes(b"{}")
        binary = json.loads((await ws.receive()).data)
        assert binary["error"]["data"]["code"] == "invalid_request"

        # the connection still works after every error
        ok = await rpc(ws, {"jsonrpc": "2.0", "id": 7, "method": "ping"})
        assert ok["result"]["version"]


async def test_oversized_frames(home: Path) -> None:
    gw = GatewayProcess(
        home,
        env={
            "TETHER_LIMITS__MAX_FRAME_BYTES": "4096",
            "TETHER_LEDGER__INLINE_PAYLOAD_BYTES": "2048",
        },
    )
    gw.start()
    try:
        big = {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"payload": "x" * 5000}}
        async with aiohttp.ClientSession() as http, await raw_ws(gw, http) as ws:
            await rpc(ws, HELLO)
            reply = await rpc(ws, big)
            assert reply["error"]["data"]["code"] == "too_large"
            assert reply["error"]["data"]["limit"] == 4096
            assert "result" in await rpc(ws, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        # over the Unix socket: the long line is answered and skipped, the connection lives on
        reader, writer = await asyncio.open_unix_connection(gw.socket)
        writer.write(json.dumps(HELLO).encode() + b"\n")
        assert "result" in json.loads(await reader.readline())
        writer.write(json.dumps(big).encode() + b"\n")
        assert json.loads(await reader.readline())["error"]["data"]["code"] == "too_large"
        writer.write(b'{"jsonrpc":"2.0","id":3,"method":"ping"}\n')
        assert "result" in json.loads(await reader.readline())
        writer.close()
    finally:
        gw.stop()


async def test_client_without_hello_is_closed(home: Path) -> None:
    gw = GatewayProcess(home, env={"TETHER_LIMITS__HELLO_TIMEOUT": "0.5"})
    gw.start()
    try:
        async with aiohttp.ClientSession() as http, await raw_ws(gw, http) as ws:
            start = time.monotonic()
            msg = await asyncio.wait_for(ws.receive(), unit(5))
            assert json.loads(msg.data)["error"]["data"]["code"] == "unauthorized"
            closed = await asyncio.wait_for(ws.receive(), unit(5))
            assert closed.type is aiohttp.WSMsgType.CLOSE
            assert closed.data == 1008  # policy violation
            assert closed.extra == "hello_timeout"
            assert time.monotonic() - start < unit(5)
        reader, _writer = await asyncio.open_unix_connection(gw.socket)
        line = await asyncio.wait_for(reader.readline(), unit(5))
        assert json.loads(line)["error"]["data"]["code"] == "unauthorized"
        assert await asyncio.wait_for(reader.read(), unit(5)) == b""
    finally:
        gw.stop()


async def test_idle_connection_is_closed(home: Path) -> None:
    gw = GatewayProcess(home, env={"TETHER_LIMITS__IDLE_TIMEOUT": "0.6"})
    gw.start()
    try:
        client = await connect_ipc(gw.socket)
        for _ in range(6):  # 1.8 s of activity, three idle timeouts' worth: still open
            await asyncio.sleep(0.3)
            await client.call(PING, PingParams())
        assert not client.closed
        quiet = time.monotonic()
        await asyncio.wait_for(client.wait_closed(), unit(5))
        assert time.monotonic() - quiet >= 0.5  # closed for being idle, not before
        await client.aclose()
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            assert 'tether_connections_closed_total{reason="idle_timeout",transport="ipc"} 1.0' in (
                await resp.text()
            )
    finally:
        gw.stop()


async def test_connection_limits(home: Path) -> None:
    gw = GatewayProcess(
        home,
        env={"TETHER_LIMITS__MAX_IPC_CONNECTIONS": "2", "TETHER_LIMITS__MAX_WS_CONNECTIONS": "1"},
    )
    gw.start()
    try:
        a = await connect_ipc(gw.socket)
        b = await connect_ipc(gw.socket)
        with pytest.raises(Overloaded) as err:
            await connect_ipc(gw.socket)
        assert "limit" in str(err.value)
        await a.aclose()
        await asyncio.sleep(0.1)
        c = await connect_ipc(gw.socket)  # a slot is free again
        await c.aclose()
        await b.aclose()

        w = await connect_ws(gw.url, token=gw.admin_token, role="admin")
        with pytest.raises(Overloaded):
            await connect_ws(gw.url, token=gw.admin_token, role="admin")
        await w.aclose()
        await asyncio.sleep(0.1)
        # many upgrades at once still get one slot between them
        tries = await asyncio.gather(
            *(connect_ws(gw.url, token=gw.admin_token, role="admin") for _ in range(10)),
            return_exceptions=True,
        )
        won = [t for t in tries if not isinstance(t, BaseException)]
        assert len(won) == 1
        assert all(isinstance(t, Overloaded) for t in tries if t not in won)
        await won[0].aclose()
    finally:
        gw.stop()


async def test_unsupported_protocol_version(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http, await raw_ws(gateway, http) as ws:
        hello = {**HELLO, "params": {"protocol": [99], "role": "admin"}}
        reply = await rpc(ws, hello)
        assert reply["error"]["data"]["code"] == UnsupportedVersion.code
        assert reply["error"]["data"]["supported"] == [1]


def test_stale_socket_is_removed(home: Path) -> None:
    run = home / "run"
    run.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "gateway.sock"))
    stale.close()  # the file stays, nobody listens
    gw = GatewayProcess(home)
    gw.start()
    try:
        assert gw.info["pid"] == gw.pid
    finally:
        gw.stop()


def test_live_gateway_refuses_a_second(gateway: GatewayProcess) -> None:
    second = run_cli(gateway.home, "gateway", "--listen", "127.0.0.1:0")
    assert second.returncode == 1
    assert f"another gateway is running (pid {gateway.pid})" in second.stderr
    # the first one is untouched
    assert Path(gateway.socket).exists()
    assert json.loads((gateway.runtime_dir / "gateway.json").read_text())["pid"] == gateway.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_cleanly(home: Path, sig: int) -> None:
    gw = GatewayProcess(home)
    gw.start()
    client = await connect_ipc(gw.socket)
    code = await asyncio.to_thread(gw.terminate, sig)
    assert code == 0, gw.stderr()
    assert not Path(gw.socket).exists()
    assert not (gw.runtime_dir / "gateway.json").exists()
    await asyncio.wait_for(client.wait_closed(), unit(5))
    await client.aclose()
    assert "gateway stopped" in gw.stderr()


async def test_healthz_and_metrics(gateway: GatewayProcess) -> None:
    async with await connect_ipc(gateway.socket) as ipc:
        await ipc.call(PING, PingParams())
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/healthz") as resp:
            assert resp.status == 200
            health = await resp.json()
            assert health["status"] == "ok"
        async with http.get(gateway.url + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert 'tether_rpc_requests_total{code="ok",method="ping",role="admin"}' in text
    assert 'tether_connections_accepted_total{transport="ipc"}' in text
    assert "tether_build_info" in text


def test_directories_and_files_are_private(gateway: GatewayProcess) -> None:
    assert gateway.runtime_dir.stat().st_mode & 0o777 == 0o700
    assert os.stat(gateway.socket).st_mode & 0o777 == 0o600
    assert (gateway.data_dir / "admin.token").stat().st_mode & 0o777 == 0o600
    assert (gateway.runtime_dir / "gateway.json").stat().st_mode & 0o777 == 0o600


def test_non_loopback_listen_needs_tls_or_insecure(home: Path) -> None:
    result = run_cli(home, "gateway", "--listen", "0.0.0.0:0")
    assert result.returncode == 2
    assert "without TLS" in result.stderr


def test_insecure_listen_warns_loudly(home: Path) -> None:
    gw = GatewayProcess(home, args=("--listen", "0.0.0.0:0", "--insecure"))
    gw.start()
    try:
        assert "WITHOUT TLS" in gw.stderr()
    finally:
        gw.stop()


def test_access_log_has_one_line_per_request_and_no_secret(home: Path) -> None:
    gw = GatewayProcess(home, env={"TETHER_LOG_FORMAT": "json"})
    gw.start()
    try:
        result = run_cli(home, "ping", "--url", gw.url, "--token", gw.admin_token)
        assert result.returncode == 0, result.stderr
    finally:
        gw.stop()
    lines = [json.loads(line) for line in gw.stderr().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "tether.access"]
    assert [a["msg"] for a in access] == ["hello", "ping"]
    assert {"role", "latency_ms", "code"} <= set(access[1])
    assert gw.admin_token not in gw.stderr()


def test_cli_ping_reports_rtt(gateway: GatewayProcess) -> None:
    result = run_cli(gateway.home, "--json", "ping", "--count", "3", "--interval", "0")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["count"] == 3
    assert len(data["rtt_ms"]) == 3
    text = run_cli(gateway.home, "ping")
    assert "time=" in text.stdout


def test_cli_ping_without_gateway_says_so(home: Path) -> None:
    result = run_cli(home, "ping")
    assert result.returncode == 1
    assert "no gateway is listening" in result.stderr


def test_gateway_json_points_at_the_process(gateway: GatewayProcess) -> None:
    info = json.loads((gateway.runtime_dir / "gateway.json").read_text())
    assert set(info) >= {"pid", "url", "socket", "version"}
    assert info["socket"] == gateway.socket
    assert subprocess.run(["kill", "-0", str(info["pid"])], check=False).returncode == 0


def test_invalid_config_names_the_key_and_exits_2(home: Path) -> None:
    bad = run_cli(home, "config", "show", env={"TETHER_LIMITS__MAX_FRAME_BYTES": "lots"})
    assert bad.returncode == 2
    assert "limits.max_frame_bytes" in bad.stderr
    assert "Expected int" in bad.stderr
    assert "TETHER_LIMITS__MAX_FRAME_BYTES" in bad.stderr
    (home / "c.toml").write_text("[gateway]\nlisen = 1\n")
    typo = run_cli(home, "--config", str(home / "c.toml"), "config", "show")
    assert typo.returncode == 2
    assert "lisen" in typo.stderr
    shown = run_cli(
        home, "--json", "config", "show", env={"TETHER_DATABASE_URL": "postgresql://u:hunter2@db/x"}
    )
    assert shown.returncode == 0
    assert "hunter2" not in shown.stdout
    assert json.loads(shown.stdout)["limits"]["max_frame_bytes"] == 1048576


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT, signal.SIGTERM)],
    ids=["twice", "mixed"],
)
def test_repeated_signals_stop_the_gateway_cleanly(home: Path, signals: tuple[int, ...]) -> None:
    proc = GatewayProcess(home)
    proc.start()
    try:
        for sig in signals:
            assert proc.proc is not None
            proc.proc.send_signal(sig)
            time.sleep(0.05)
        code = proc.wait(30)
    finally:
        proc.stop()
    err = proc.stderr()
    assert "Traceback" not in err, err
    assert code == 0, err
    assert not (proc.runtime_dir / "gateway.sock").exists()
