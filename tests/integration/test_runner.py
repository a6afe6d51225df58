"""A real gateway and real `tether runner` processes: enrolment, every tool, cancel, drops."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tests.support.proxy import proxied_runner
from tether.errors import (
    Forbidden,
    InvalidParams,
    Overloaded,
    PolicyDenied,
    RunnerOffline,
    ToolFailed,
    ToolTimeout,
    Unauthorized,
)
from tether.protocol.methods import GATEWAY_INFO, RUN_CREATE, RUNNER_ADD, RUNNER_LIST, TOOL_CALL
from tether.protocol.runners import RunnerAddParams, ToolCallParams
from tether.protocol.runs import RunCreateParams
from tether.protocol.system import Empty
from tether.transport.client import RpcClient, connect_ipc, connect_ws

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


async def call(
    c: RpcClient, tool: str, timeout: float | None = None, runner: str = "box", **args: Any
) -> Any:
    out = await c.call(
        TOOL_CALL, ToolCallParams(runner=runner, tool=tool, args=args, timeout=timeout), timeout=60
    )
    return json.loads(bytes(out.result))


async def test_enrol_register_list(make_gateway: MakeGateway, make_runner: MakeRunner) -> None:
    gw = make_gateway()
    runner = make_runner(gw)
    assert runner.info["runner"] == "box"
    async with await connect_ipc(gw.socket) as c:
        listing = await c.call(RUNNER_LIST, Empty())
    (info,) = listing.runners
    assert (info.name, info.status, info.online, info.workspaces) == (
        "box",
        "enrolled",
        True,
        ["app"],
    )
    assert set(info.tools) == {
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "glob",
        "grep",
        "shell",
        "put_file",
        "get_file",
        "noop",
    }
    assert info.version
    ident = runner.config_dir / "runner.json"
    assert ident.stat().st_mode & 0o777 == 0o600
    text = run_cli(gw.home, "runners", "list").stdout
    assert "box" in text
    assert "online" in text


async def test_every_tool_through_the_full_path(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway()
    make_runner(gw)
    ws = home / "ws-box"
    async with await connect_ipc(gw.socket) as c:
        w = await call(c, "write_file", path="src/a.py", content="x = 1\ny = 2\n")
        assert w["created"] is True
        assert (ws / "src/a.py").read_text() == "x = 1\ny = 2\n"
        rd = await call(c, "read_file", path="src/a.py", offset=1, limit=1)
        assert (rd["content"], rd["total_lines"]) == ("y = 2\n", 2)
        await call(c, "edit_file", path="src/a.py", old="y = 2", new="y = 3")
        assert "y = 3" in (ws / "src/a.py").read_text()
        with pytest.raises(ToolFailed) as info:
            await call(c, "edit_file", path="src/a.py", old="nothing", new="x")
        assert info.value.data["reason"] == "no_match"
        listing = await call(c, "list_dir", path="src")
        assert [e["name"] for e in listing["entries"]] == ["a.py"]
        found = await call(c, "glob", pattern="**/*.py")
        assert found["paths"] == ["src/a.py"]
        hits = await call(c, "grep", pattern="y = 3")
        assert [(m["path"], m["line"]) for m in hits["matches"]] == [("src/a.py", 2)]
        sh = await call(c, "shell", command="echo $((6*7)); pwd")
        assert sh["exit_code"] == 0
        assert sh["output"].split() == ["42", str(ws)]
        assert await call(c, "noop", echo="hi") == {"ok": True, "echo": "hi"}
        failing = await call(c, "shell", command="exit 3")
        assert failing["exit_code"] == 3
        with pytest.raises(InvalidParams):
            await call(c, "read_file", nope=1)
    calls = [line for line in gw.stderr().splitlines() if "tool.call" in line]
    assert calls  # every call went through the access log


async def test_calls_per_runner_are_capped_at_the_gateway(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway(TETHER_LIMITS__MAX_RUNNER_INFLIGHT="2")
    make_runner(gw)
    gate = home / "ws-box" / "go"
    wait = f"for i in $(seq 1 1000); do [ -e {gate} ] && exit 0; sleep 0.02; done; exit 1"
    async with await connect_ipc(gw.socket) as c:
        calls = [asyncio.ensure_future(call(c, "shell", command=wait)) for _ in range(3)]
        done, _pending = await asyncio.wait(
            calls, timeout=unit(15), return_when=asyncio.FIRST_COMPLETED
        )
        (refused,) = done
        with pytest.raises(Overloaded, match="already runs 2 calls"):
            refused.result()
        (info,) = (await c.call(RUNNER_LIST, Empty())).runners
        assert info.inflight == 2
        gate.touch()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(t for t in calls if t is not refused)), unit(30)
        )
        assert [o["exit_code"] for o in outcomes] == [0, 0]
        assert (await call(c, "noop", echo="again"))["echo"] == "again"
        (info,) = (await c.call(RUNNER_LIST, Empty())).runners
        assert info.inflight == 0


async def test_requests_in_flight_per_connection_are_capped(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway(TETHER_LIMITS__MAX_INFLIGHT_REQUESTS="2")
    make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        slow = [asyncio.ensure_future(call(c, "shell", command="sleep 1")) for _ in range(2)]
        await asyncio.sleep(0.3)
        with pytest.raises(Overloaded, match="more than 2 requests in flight"):
            await call(c, "noop")
        assert [o["exit_code"] for o in await asyncio.gather(*slow)] == [0, 0]
        assert (await call(c, "noop", echo="free again"))["echo"] == "free again"


async def test_sigterm_lets_requests_in_flight_finish_then_closes_with_1001(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    make_runner(gw)
    headers = {"Authorization": f"Bearer {gw.admin_token}"}
    request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tool.call",
        "params": {"runner": "box", "tool": "shell", "args": {"command": "sleep 1; echo ok"}},
    }
    async with aiohttp.ClientSession() as http, http.ws_connect(gw.ws_url, headers=headers) as ws:
        await ws.send_json(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "hello",
                "params": {"protocol": [1], "role": "admin"},
            }
        )
        assert "result" in await ws.receive_json(timeout=unit(10))
        await ws.send_json(request)
        await asyncio.sleep(0.3)
        exited = asyncio.ensure_future(asyncio.to_thread(gw.terminate, signal.SIGTERM))
        reply = await ws.receive_json(timeout=unit(15))
        assert reply["id"] == 7
        assert reply["result"]["result"]["output"].strip() == "ok"
        closing = await ws.receive(timeout=unit(15))
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
        assert await asyncio.wait_for(exited, unit(30)) == 0


async def test_timeout_output_cap_and_sandbox(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway()
    make_runner(gw, env={"TETHER_RUNNER__OUTPUT_CAP_BYTES": "1000"})
    outside = Path("/var/tmp") / f"tether-test-{os.getpid()}-{time.time_ns()}"
    async with await connect_ipc(gw.socket) as c:
        start = time.monotonic()
        with pytest.raises(ToolTimeout):
            await call(c, "shell", command="sleep 30", timeout=1)
        assert time.monotonic() - start < unit(10)
        big = await call(c, "shell", command="head -c 100000 /dev/zero | tr '\\0' x")
        assert big["truncated"] is True
        assert "output truncated" in big["output"]
        assert len(big["output"]) < 2000
        sandboxed = await call(c, "shell", command=f"touch {outside}; echo done")
        if sandboxed["sandboxed"]:
            assert not outside.exists()
            assert "No such file or directory" in sandboxed["output"]  # /var is not mounted
            scratch = await call(c, "shell", command="touch /tmp/scratch && echo ok")
            assert scratch["output"].strip() == "ok"  # a private /tmp inside the sandbox
        else:
            # where bubblewrap is installed (CI installs it) the sandbox must be active
            assert shutil.which("bwrap") is None, "bubblewrap is installed but was not used"
            outside.unlink(missing_ok=True)
            pytest.skip("bubblewrap is not installed here")


async def test_policy_denials_come_from_the_runner(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway()
    ws = home / "ws-box"
    ws.mkdir()
    (ws / ".ssh").mkdir()
    (ws / ".ssh" / "id").write_text("secret")
    secret = home / "secret.txt"
    secret.write_text("top secret")
    (ws / "link").symlink_to(secret)
    make_runner(gw, workspaces={"app": ws}, env={"TETHER_RUNNER__DENIED_PATHS": f"{ws / '.ssh'}"})
    async with await connect_ipc(gw.socket) as c:
        for path in ("../secret.txt", "link", str(secret), ".ssh/id"):
            with pytest.raises(PolicyDenied) as info:
                await call(c, "read_file", path=path)
            assert info.value.data["reason"] in ("outside_workspace", "denied_path", "symlink"), (
                path
            )
        with pytest.raises(PolicyDenied):
            await call(c, "write_file", path="../escape.txt", content="x")
        assert not (home / "escape.txt").exists()


async def test_cancel_kills_the_process_group(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway(TETHER_RUNS__DEFAULT_MODE="auto")  # the shell call runs unasked
    make_runner(gw)
    marker = f"{time.time_ns() % 100000 + 1000}.5"
    async with await connect_ipc(gw.socket) as c:
        script = f'tool box shell \'{{"command": "sleep {marker} & sleep {marker}; wait"}}\''
        created = await c.call(RUN_CREATE, RunCreateParams(input=script))
        for _ in range(100):
            if _sleepers(marker):
                break
            await asyncio.sleep(0.05)
        assert _sleepers(marker), "the command did not start"
        from tether.protocol.methods import RUN_CANCEL
        from tether.protocol.runs import RunCancelParams

        await c.call(RUN_CANCEL, RunCancelParams(run_id=created.run.id))
        done = await r.wait_state(c, created.run.id, timeout=15)
        assert done.state == "cancelled"
        for _ in range(100):
            if not _sleepers(marker):
                break
            await asyncio.sleep(0.05)
        assert _sleepers(marker) == [], "orphans left behind"
        kinds = await r.kinds(c, created.run.id)
        assert "tool.call.requested" in kinds


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd[:2] == [b"sleep", marker.encode()] and state != "Z":
            found.append(int(pid))
    return found


async def test_kill9_runner_mid_call_fails_promptly(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway(TETHER_LIMITS__RUNNER_GRACE="1")
    runner = make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        task = asyncio.create_task(call(c, "shell", command="sleep 60", timeout=120))
        await asyncio.sleep(1.0)
        start = time.monotonic()
        runner.kill()
        with pytest.raises(RunnerOffline):
            await task
        assert time.monotonic() - start < unit(10)  # the deadline was 120 s
        with pytest.raises(RunnerOffline):
            await call(c, "shell", command="true")  # offline: refused at once


async def test_reconnect_within_grace_delivers_the_outcome_once(
    make_gateway: MakeGateway, home: Path
) -> None:
    gw = make_gateway(TETHER_LIMITS__RUNNER_GRACE="20")
    proxy, runner, ws = await proxied_runner(gw, home)
    try:
        async with await connect_ipc(gw.socket) as c:
            task = asyncio.create_task(
                call(
                    c, "shell", command="echo ran >> count.txt; sleep 2; echo finished", timeout=60
                )
            )
            await asyncio.sleep(0.8)
            assert proxy.cut() > 0  # the network drops mid-call
            result = await asyncio.wait_for(task, unit(30))
        assert result["output"].strip() == "finished"
        assert (ws / "count.txt").read_text() == "ran\n"  # executed exactly once
        assert proxy.connections >= 2
        assert "re-sending a call" in gw.stderr()
    finally:
        await asyncio.to_thread(runner.stop)
        await proxy.aclose()


async def test_runs_record_their_tool_calls_and_offline_runners(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    make_runner(gw)
    make_runner(gw, name="asleep", start=False)  # enrolled, never connected
    async with await connect_ipc(gw.socket) as c:
        ok = await c.call(RUN_CREATE, RunCreateParams(input='tool box noop \'{"echo": "hi"}\''))
        done = await r.wait_state(c, ok.run.id)
        assert (done.state, json.loads(done.output or "")["echo"]) == ("succeeded", "hi")
        evs = await r.events(c, ok.run.id)
        (asked,) = [p for _, k, p in evs if k == "tool.call.requested"]
        assert (asked["runner"], asked["workspace"]) == ("box", "app")
        assert "tool.call.succeeded" in [k for _, k, _ in evs]

        off = await c.call(RUN_CREATE, RunCreateParams(input="tool asleep noop '{}'"))
        failed = await r.wait_state(c, off.run.id)
        assert (failed.state, failed.reason) == ("failed", "runner_offline")
        kinds = await r.kinds(c, off.run.id)
        assert [k for k in kinds if k.startswith("tool.call")] == [
            "tool.call.requested",
            "tool.call.failed",
        ]

        unknown = await c.call(RUN_CREATE, RunCreateParams(input="tool nobody noop '{}'"))
        assert (await r.wait_state(c, unknown.run.id)).reason == "not_found"
        assert not [k for k in await r.kinds(c, unknown.run.id) if k.startswith("tool.call")]


async def test_revoked_runner_is_cut_off(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    runner = make_runner(gw)
    identity = json.loads((runner.config_dir / "runner.json").read_text())
    revoke = run_cli(gw.home, "runners", "revoke", "box")
    assert revoke.returncode == 0, revoke.stderr
    assert runner.wait(timeout=20) == 3  # disconnected at once, then refused: it stops
    assert "rejected this runner's credential" in runner.stderr()
    with pytest.raises(Unauthorized):
        await connect_ws(gw.url, token=identity["credential"], role="runner")
    async with await connect_ipc(gw.socket) as c:
        (info,) = (await c.call(RUNNER_LIST, Empty())).runners
        assert (info.status, info.online) == ("revoked", False)


def test_runner_refuses_plain_ws_to_a_remote_gateway(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    runner = make_runner(gw, start=False)
    ident = runner.config_dir / "runner.json"
    data = json.loads(ident.read_text())
    # refused before any name lookup or connection: the .invalid domain never resolves
    data["gateway_url"] = "ws://gateway.invalid:8765"
    ident.write_text(json.dumps(data))
    runner.start(wait=False)
    assert runner.wait(timeout=20) == 2  # a clear error and an exit, not endless retries
    assert "refusing plain ws://" in runner.stderr()


async def test_enrolment_codes_work_once_and_expire(make_gateway: MakeGateway, home: Path) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        added = await c.call(RUNNER_ADD, RunnerAddParams(name="once"))
        short = await c.call(RUNNER_ADD, RunnerAddParams(name="short", code_ttl=1))

    def enrol(code: str, name: str) -> Any:
        return run_cli(
            home,
            "runner",
            "enroll",
            "--gateway",
            gw.url,
            "--code",
            code,
            env={"TETHER_CONFIG_DIR": str(home / f"cfg-{name}")},
        )

    assert enrol(added.code, "a").returncode == 0
    reused = enrol(added.code, "b")
    assert reused.returncode == 1
    assert "unknown, already used or expired" in reused.stderr
    await asyncio.sleep(1.5)
    expired = enrol(short.code, "c")
    assert expired.returncode == 1
    assert "expired" in expired.stderr
    garbage = enrol("AAAA-BBBB-CCCC-DDDD", "d")
    assert garbage.returncode == 1


async def test_runner_role_cannot_call_gateway_methods(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    runner = make_runner(gw, start=False)
    credential = json.loads((runner.config_dir / "runner.json").read_text())["credential"]
    async with await connect_ws(gw.url, token=credential, role="runner") as rc:
        for method, params in (
            (GATEWAY_INFO, Empty()),
            (RUN_CREATE, RunCreateParams(input="say x")),
            (RUNNER_ADD, RunnerAddParams(name="evil")),
            (TOOL_CALL, ToolCallParams(runner="box", tool="shell", args={"command": "id"})),
        ):
            with pytest.raises(Forbidden):
                await rc.call(method, params)
    with pytest.raises(Forbidden):
        await connect_ws(
            gw.url, token=credential, role="admin"
        )  # a runner credential is only a runner


def test_cli_tools_call_and_runners_add(make_gateway: MakeGateway, make_runner: MakeRunner) -> None:
    gw = make_gateway()
    make_runner(gw)
    out = run_cli(gw.home, "tools", "call", "box", "shell", "--args", '{"command": "echo hello"}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hello")
    assert "[exit 0" in out.stdout
    bad = run_cli(gw.home, "tools", "call", "box", "shell", "--args", "not json")
    assert bad.returncode == 2
    missing = run_cli(gw.home, "tools", "call", "nobody", "shell")
    assert missing.returncode == 1
    assert "no runner named" in missing.stderr
    dup = run_cli(gw.home, "runners", "add", "box")
    assert dup.returncode == 1
    assert "--rotate" in dup.stderr
    bad_name = run_cli(gw.home, "runners", "add", "no spaces")
    assert bad_name.returncode == 2


async def test_sigterm_lets_calls_finish_or_cancels_them(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway(TETHER_LIMITS__RUNNER_GRACE="1")
    runner = make_runner(gw, env={"TETHER_RUNNER__SHUTDOWN_GRACE": "2"})
    async with await connect_ipc(gw.socket) as c:
        quick = asyncio.create_task(call(c, "shell", command="sleep 0.5; echo ok", timeout=30))
        slow = asyncio.create_task(call(c, "shell", command="sleep 30", timeout=60))
        await asyncio.sleep(0.3)
        code = await asyncio.to_thread(runner.terminate)
        assert code == 0
        assert (await quick)["output"].strip() == "ok"  # finished within the grace period
        with pytest.raises(ToolFailed) as info:
            await slow  # cancelled after the grace period, its process group killed
        assert info.value.data["reason"] == "cancelled"


async def test_every_call_is_recorded_with_its_token(
    make_gateway: MakeGateway, make_runner: MakeRunner, database_url: str | None
) -> None:
    from sqlalchemy import select

    from tether.config import LedgerConfig
    from tether.ledger import Ledger
    from tether.ledger.schema import tool_calls

    gw = make_gateway()
    make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        await call(c, "noop", echo="x")
        with pytest.raises(PolicyDenied):
            await call(c, "read_file", path="../x")
    led = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir)
    try:
        async with led.db.reader.connect() as conn:
            rows = (await conn.execute(select(tool_calls).order_by(tool_calls.c.id))).all()
    finally:
        await led.aclose()
    assert [(row.tool, row.state, row.decision) for row in rows] == [
        ("noop", "succeeded", "allow"),
        ("read_file", "failed", "allow"),
    ]
    assert all(row.token_id and row.args_sha256 and row.finished_at for row in rows)
    assert rows[1].error_code == "policy_denied"
    assert rows[0].requested_by == "local-admin"


def _self_signed(where: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tether test gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "gateway.crt", where / "gateway.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_gateway_with_wss_clients_and_runner(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    cert, key = _self_signed(home)
    gw = make_gateway(TETHER_GATEWAY__TLS_CERT=str(cert), TETHER_GATEWAY__TLS_KEY=str(key))
    assert gw.url.startswith("https://127.0.0.1:")
    wss = gw.url.replace("https", "wss", 1)
    trust = {"SSL_CERT_FILE": str(cert)}  # the client trusts this certificate
    ok = run_cli(home, "ping", "--url", wss, "--token", gw.admin_token, env=trust)
    assert ok.returncode == 0, ok.stderr
    assert "ms" in ok.stdout
    untrusted = run_cli(home, "ping", "--url", wss, "--token", gw.admin_token)
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr.lower()
    # enrolment over https and the daemon over wss
    runner = make_runner(gw, env=trust)
    assert runner.info["gateway"] == gw.url
    async with await connect_ipc(gw.socket) as c:
        assert (await call(c, "noop", echo="over tls"))["echo"] == "over tls"
