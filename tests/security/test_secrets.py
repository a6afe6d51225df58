"""Secrets never reach the ledger or the gateway's log, whatever carries them.

A scripted runner (real credential, real WebSocket) streams and returns every secret kind
(split across chunks, after escaped newlines in JSON); runs carry them in their input,
arguments, output and errors; a client sends them as method names the gateway logs.
Then every row of every table (SQLite and PostgreSQL, plus SQLite's raw files) and the
gateway's log are scanned.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import unit
from tests.support import runs as r
from tests.support.ledger_scan import dump_ledger
from tests.support.process import GatewayProcess, run_cli
from tests.support.scripted_runner import Reply, ScriptedRunner
from tests.support.secrets import Sample, secret_samples
from tether.config import LedgerConfig
from tether.ledger import Ledger
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]


def _split_inside_secret(text: str, secret: str) -> tuple[str, str]:
    cut = text.index(secret) + len(secret) // 2
    return text[:cut], text[cut:]


def _chunks(samples: list[Sample], credential: str) -> list[tuple[str, str]]:
    """Each secret split in the middle across two chunks, on both streams."""
    out: list[tuple[str, str]] = [("stdout", "starting\n")]
    for i, s in enumerate(samples):
        stream = "stdout" if i % 2 else "stderr"
        first, second = _split_inside_secret(f"{s.text}\n", s.secrets[0])
        out += [(stream, first), (stream, second)]
    first, second = _split_inside_secret(f"CREDENTIAL={credential}\n", credential.split(".")[1])
    return [*out, ("stdout", first), ("stdout", second), ("stdout", "done\n")]


def _leaks(text: str, samples: list[Sample], credential: str) -> list[str]:
    secret = credential.split(".", 1)[1]
    found = [f"{s.kind}:{p}" for s in samples for p in s.secrets if p in text]
    return found + (["runner credential"] if secret in text else [])


async def _send_raw_ipc(socket: str, frames: list[dict[str, object]]) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_unix_connection(socket)
    replies = []
    try:
        for frame in frames:
            writer.write(json.dumps(frame).encode() + b"\n")
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), unit(5))))
    finally:
        writer.close()
    return replies


async def test_no_secret_reaches_the_ledger_or_the_log(
    make_gateway: MakeGateway, database_url: str | None
) -> None:
    gw = make_gateway(TETHER_LOG_LEVEL="debug")
    samples = secret_samples()
    one_line = [s for s in samples if "\n" not in s.text]
    runner = ScriptedRunner(gw, replies={"leak": Reply(), "fail": Reply()})
    await runner.start()
    cred = runner.credential
    everything = "\n".join([s.text for s in samples] + [f"CREDENTIAL={cred}"])
    runner.replies["leak"] = Reply(
        chunks=_chunks(samples, cred),
        # encoded JSON: every secret follows an escaped \n
        result=json.dumps(
            {"stdout": f"start\n{everything}\n", "env": {"password": "pw-1"}}
        ).encode(),
    )
    runner.replies["fail"] = Reply(error="could not log in: " + " ".join(s.text for s in one_line))
    try:
        args = json.dumps({"note": everything, "password": "hunter2-arg"})
        script = "\n".join(
            [
                "say " + shlex.quote(" ".join(s.text for s in one_line) + f" {cred}"),
                f"tool box leak {shlex.quote(args)}",
            ]
        )
        async with await connect_ipc(gw.socket) as c:
            ok = await r.start(c, script)
            done = await r.wait_state(c, ok.run.id)
            assert done.state == "succeeded", done
            kinds = await r.kinds(c, ok.run.id)
            assert kinds.count("tool.call.output") >= 2
            failed = await r.wait_state(c, (await r.start(c, "tool box fail '{}'")).run.id)
            assert (failed.state, failed.reason) == ("failed", "tool_failed")
        # the caller of a tool gets the result as the runner sent it (only storage is redacted)
        # (in a thread: the scripted runner answers on this test's event loop)
        called = await asyncio.to_thread(
            run_cli, gw.home, "--json", "tools", "call", "box", "leak", "--args", args
        )
        assert called.returncode == 0, called.stderr
        assert samples[2].secrets[0] in called.stdout
        # method names the gateway logs when it rejects a frame
        frames: list[dict[str, object]] = [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "hello",
                "params": {"protocol": [1], "role": "admin"},
            }
        ]
        frames += [
            {"jsonrpc": "2.0", "id": i + 2, "method": s.text} for i, s in enumerate(one_line)
        ]
        replies = await _send_raw_ipc(gw.socket, frames)
        assert all("error" in rep for rep in replies[1:])
    finally:
        await runner.aclose()
    gw.stop()

    stored = await dump_ledger(database_url, gw.data_dir)
    assert "[redacted]" in stored
    assert "tool.call.output" in stored
    assert not _leaks(stored, samples, cred)
    log = gw.stderr()
    assert "rejected frame" in log
    assert not _leaks(log, samples, cred)
    # stored results stay valid JSON
    led = await Ledger.open(LedgerConfig(database_url=database_url), gw.data_dir, migrate=False)
    try:
        calls = await led.tool_calls.for_run(ok.run.id)
    finally:
        await led.aclose()
    (leak,) = [c for c in calls if c.tool == "leak"]
    assert json.loads(leak.result or "")["stdout"].startswith("start\n")


async def _accepted(gw: GatewayProcess, http: aiohttp.ClientSession, token: str) -> bool:
    try:
        ws = await http.ws_connect(gw.ws_url, headers={"Authorization": f"Bearer {token}"})
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status != 401:
            raise
        return False
    await ws.close()
    return True


async def test_the_stored_form_of_a_runner_credential_is_no_credential(
    make_gateway: MakeGateway, database_url: str | None, home: Path
) -> None:
    gw = make_gateway()
    runner = ScriptedRunner(gw, name="self-leak", replies={"leak": Reply()})
    await runner.start()
    cred = runner.credential
    runner.replies["leak"] = Reply(
        chunks=[("stdout", f"token {cred}\n"), ("stdout", f"TETHER_CREDENTIAL={cred}\n")],
        result=json.dumps({"stdout": f"x\n{cred}\n", "cred": cred}).encode(),
    )
    try:
        async with await connect_ipc(gw.socket) as c:
            run = await r.start(c, "tool self-leak leak '{}'")
            assert (await r.wait_state(c, run.run.id)).state == "succeeded"
        stored = await dump_ledger(database_url, gw.data_dir)
        rid = runner.runner_id
        # whatever follows a mask, and every secret-sized run of characters, with the id
        after_mask = re.findall(r"\[redacted\]([^\s\"\\,]*)", stored)
        candidates = {f"ttr_{rid}.[redacted]", f"ttr_{rid}.redacted"}
        candidates |= {f"ttr_{rid}{tail}" for tail in after_mask if tail}
        candidates |= {f"ttr_{rid}.{t}" for t in re.findall(r"[A-Za-z0-9_\-]{40,50}", stored)}
        async with aiohttp.ClientSession() as http:
            assert await _accepted(gw, http, cred)  # the real one works
            rebuilt = [t for t in sorted(candidates) if await _accepted(gw, http, t)]
        assert rebuilt == []
    finally:
        await runner.aclose()
