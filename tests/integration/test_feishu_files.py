"""Files through Feishu end to end: a real gateway, runner and operator agent, with the
real ``lark-oapi`` SDK against the stand-in. An image or file sent in a chat is fetched
(size-capped), kept as an artifact and written into the workspace's ``.tether/inbox/``
by the runner (which pulls exactly those bytes for that one call); ``/send PATH`` uploads
a workspace file back. And the attacks: names that climb out, files too large, paths
outside the workspace or through a symlink, a policy rule, a viewer, and a ``put_file``
no one handed bytes to."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_feishu_channel import (
    SECRET_ENV,
    push,
    replies_to,
    runs,
    start_gateway,
)
from tests.support.feishu import FeishuStandIn, stand_in, write_config
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli
from tests.support.scripted_runner import Reply, ScriptedRunner
from tether.errors import TetherError
from tether.protocol.methods import FILE_PULL, FILE_PUSH
from tether.protocol.runners import FilePullParams, FilePushParams, ToolExecuteParams

__all__ = ["stand_in"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(3000)


@pytest.fixture
def engine() -> str:
    return "sqlite"


def _event(message_id: str, kind: str, content: dict[str, Any], sender: str = "ou_alice") -> dict:
    return {
        "sender": {"sender_id": {"open_id": sender}, "sender_type": "user"},
        "message": {
            "message_id": message_id,
            "chat_id": "oc_p2p",
            "chat_type": "p2p",
            "message_type": kind,
            "content": json.dumps(content),
            "mentions": [],
            "create_time": str(int(time.time() * 1000)),
        },
    }


def _post_with_image(message_id: str, text: str, image_key: str) -> dict[str, Any]:
    content = {"zh_cn": {"content": [[{"tag": "text", "text": text}],
                                     [{"tag": "img", "image_key": image_key}]]}}  # fmt: skip
    return _event(message_id, "post", content)


def _wait_reply(stand_in: FeishuStandIn, message_id: str, needle: str) -> str:
    stand_in.wait_for(
        lambda: any(needle in r for r in replies_to(stand_in, message_id)), 30 * SCALE
    )
    return next(r for r in replies_to(stand_in, message_id) if needle in r)


def _resource_gets(stand_in: FeishuStandIn) -> list[str]:
    return [c.path for c in stand_in.calls if "/resources/" in c.path]


@pytest.fixture
def files_gateway(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway, make_runner: MakeRunner
) -> GatewayProcess:
    """Files up to 64 KiB; ``/send`` of anything under ``private/`` denied by a rule."""
    write_config(home, stand_in, secret_env=SECRET_ENV)
    config = home / "files.toml"
    config.write_text(
        (home / "config" / "config.toml").read_text()
        + '\n[[policy.rules]]\ndecision = "deny"\ntool = "get_file"\npaths = ["private/**"]\n'
        + 'reason = "private files stay here"\n'
    )
    return start_gateway(
        home, stand_in, make_gateway, make_runner,
        TETHER_CONFIG=str(config), TETHER_CHANNELS__MAX_FILE_BYTES=str(64 * 1024),
    )  # fmt: skip


def test_an_image_reaches_the_agent_as_a_file_in_the_inbox(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    stand_in.seed_resource("om_img", "img_v3_abcdef12", PNG, "image/png")
    digest = hashlib.sha256(PNG).hexdigest()
    event = _post_with_image("om_img", "!sha256sum .tether/inbox/*", "img_v3_abcdef12")
    assert push(stand_in, event, "ev_img").code == 200
    reply = _wait_reply(stand_in, "om_img", digest)  # the agent read the very bytes sent
    assert "image-abcdef12.png" in reply
    saved = home / "ws-box" / ".tether" / "inbox" / "image-abcdef12.png"
    assert saved.read_bytes() == PNG
    [run] = runs(home)
    assert f".tether/inbox/image-abcdef12.png (image/png, {len(PNG)} bytes)" in run["input"]
    assert _resource_gets(stand_in) == [
        "/open-apis/im/v1/messages/om_img/resources/img_v3_abcdef12"
    ]


def test_a_file_named_to_climb_out_lands_in_the_inbox_under_its_last_name(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    data = b"#!/bin/sh\necho pwned\n"
    stand_in.seed_resource("om_f", "file_v3_x", data)
    content = {"file_key": "file_v3_x", "file_name": "../../.bashrc\u202e.txt"}
    assert push(stand_in, _event("om_f", "file", content), "ev_f").code == 200
    stand_in.wait_for(lambda: len(runs(home)) == 1, 30 * SCALE)
    inbox = home / "ws-box" / ".tether" / "inbox"
    stand_in.wait_for(lambda: inbox.is_dir() and any(inbox.iterdir()), 30 * SCALE)
    [saved] = list(inbox.iterdir())
    assert saved.name == "bashrc_.txt"
    assert saved.read_bytes() == data
    assert not (home / ".bashrc").exists()
    assert not (home / "ws-box" / ".bashrc").exists()


def test_a_file_over_the_limit_is_not_fetched_into_the_workspace_and_the_agent_is_told(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    big = secrets.token_bytes(64 * 1024 + 1)
    stand_in.seed_resource("om_big", "file_v3_big", big)
    content = {"file_key": "file_v3_big", "file_name": "big.bin"}
    assert push(stand_in, _event("om_big", "file", content), "ev_big").code == 200
    # a size the message declares over the limit: not even downloaded
    stand_in.seed_resource("om_said", "file_v3_said", b"small, but said to be huge")
    content = {"file_key": "file_v3_said", "file_name": "said.bin", "file_size": 10**8}
    assert push(stand_in, _event("om_said", "file", content), "ev_said").code == 200
    stand_in.wait_for(lambda: len(runs(home)) == 2, 30 * SCALE)
    inputs = sorted(r["input"] for r in runs(home))
    assert "big.bin" in inputs[0]
    assert "said.bin" in inputs[1]
    for text in inputs:
        assert "over the 65536-byte limit" in text
    assert not (home / "ws-box" / ".tether" / "inbox").exists()
    assert _resource_gets(stand_in) == ["/open-apis/im/v1/messages/om_big/resources/file_v3_big"]


def test_a_viewers_file_is_never_fetched(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    assert run_cli(home, "users", "add", "vera", "--role", "viewer").returncode == 0
    linked = run_cli(home, "users", "link", "vera", "--channel", "feishu", "--id", "ou_vera")
    assert linked.returncode == 0, linked.stderr
    stand_in.seed_resource("om_v", "file_v3_v", b"data")
    event = _event("om_v", "file", {"file_key": "file_v3_v", "file_name": "v.txt"}, "ou_vera")
    assert push(stand_in, event, "ev_v").code == 200
    stand_in.wait_for(lambda: replies_to(stand_in, "om_v"), 30 * SCALE)
    assert _resource_gets(stand_in) == []
    assert runs(home) == []


def test_send_uploads_a_workspace_file_and_an_image_goes_as_an_image(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    ws = home / "ws-box"
    (ws / "out").mkdir()
    (ws / "out" / "report.txt").write_bytes(b"all green\n" * 100)
    (ws / "chart.png").write_bytes(PNG)
    stand_in.rotate_token()  # the first upload is refused for its token and made again, whole
    for i, path in enumerate(("out/report.txt", "chart.png")):
        event = _event(f"om_s{i}", "text", {"text": f"/send {path}"})
        assert push(stand_in, event, f"ev_s{i}").code == 200
    stand_in.wait_for(lambda: len(stand_in.sent_files()) == 2, 30 * SCALE)
    by_kind = {m["msg_type"]: (m, up) for m, up in stand_in.sent_files()}
    message, uploaded = by_kind["file"]
    assert uploaded["data"] == b"all green\n" * 100
    assert uploaded["name"] == "report.txt"
    assert message["reply_to"] == "om_s0"
    message, uploaded = by_kind["image"]
    assert uploaded["data"] == PNG
    assert message["reply_to"] == "om_s1"
    assert "report.txt" in _wait_reply(stand_in, "om_s0", "report.txt")


REFUSED = [
    ("../outside.txt", "outside"),
    ("link.txt", "symlink"),
    ("private/key.txt", "private files stay here"),
    ("big.bin", "over the 65536-byte limit"),
    ("missing.txt", "does not exist"),
]


def test_send_refuses_what_it_may_not_send_and_uploads_nothing(
    files_gateway: GatewayProcess, stand_in: FeishuStandIn, home: Path
) -> None:
    ws = home / "ws-box"
    (home / "outside.txt").write_text("secret outside the workspace")
    os.symlink(home / "outside.txt", ws / "link.txt")
    (ws / "private").mkdir()
    (ws / "private" / "key.txt").write_text("key")
    (ws / "big.bin").write_bytes(b"x" * (64 * 1024 + 1))
    for i, (path, _) in enumerate(REFUSED):
        event = _event(f"om_r{i}", "text", {"text": f"/send {path}"})
        assert push(stand_in, event, f"ev_r{i}").code == 200
    for i, (path, why) in enumerate(REFUSED):
        reply = _wait_reply(stand_in, f"om_r{i}", "Could not send")
        assert why in reply, (path, reply)
    assert stand_in.uploads == {}
    assert stand_in.sent_files() == []


def test_a_put_file_no_one_handed_bytes_to_writes_nothing(
    files_gateway: GatewayProcess, home: Path
) -> None:
    """An owner (or an agent) calling ``put_file`` directly has nothing to pull: the
    gateway serves bytes only to the call it made for a chat's file."""
    args = {"path": "planted.sh", "size": 4, "sha256": hashlib.sha256(b"evil").hexdigest()}
    out = run_cli(home, "tools", "call", "box", "put_file", "--args", json.dumps(args))
    assert out.returncode != 0
    assert "no file transfer" in out.stdout + out.stderr
    assert not (home / "ws-box" / "planted.sh").exists()


async def test_a_runner_reaches_only_the_transfer_of_its_own_running_call(
    home: Path, stand_in: FeishuStandIn, make_gateway: MakeGateway
) -> None:
    """Another runner that names a running ``put_file`` call gets nothing from it and can
    put nothing into it; the call's own runner gets exactly the chat's bytes, and cannot
    push into a call that writes."""
    write_config(home, stand_in, secret_env=SECRET_ENV)
    env = {SECRET_ENV: stand_in.app_secret, "NO_PROXY": "127.0.0.1,localhost"}
    gw = await asyncio.to_thread(make_gateway, **env)
    await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 1, 30 * SCALE)
    for args in (("add", "alice"), ("link", "alice", "--channel", "feishu", "--id", "ou_alice")):
        done = await asyncio.to_thread(run_cli, home, "users", *args)
        assert done.returncode == 0, done.stderr
    evil = await ScriptedRunner(gw, "evil", replies={"noop": Reply()}).start()
    seen: dict[str, Any] = {}

    def pull(call_id: str) -> FilePullParams:
        return FilePullParams(request_key=f"pull:{call_id}@0", call_id=call_id, offset=0)

    def push_(call_id: str) -> FilePushParams:
        return FilePushParams(request_key=f"push:{call_id}@0", call_id=call_id, offset=0, data=b"x")

    async def refused(client: Any, method: Any, params: Any) -> str:
        with pytest.raises(TetherError) as caught:
            await client.call(method, params)
        return caught.value.code

    async def during(p: ToolExecuteParams) -> bytes:
        assert evil.client is not None
        assert box.client is not None
        seen["evil"] = [
            await refused(evil.client, FILE_PULL, pull(p.call_id)),
            await refused(evil.client, FILE_PUSH, push_(p.call_id)),
        ]
        chunk = await box.client.call(FILE_PULL, pull(p.call_id))
        seen["data"], seen["eof"] = chunk.data, chunk.eof
        seen["push"] = await refused(box.client, FILE_PUSH, push_(p.call_id))
        seen["args"] = p.args
        return json.dumps(
            {"path": p.args["path"], "size": p.args["size"], "sha256": p.args["sha256"],
             "created": True}
        ).encode()  # fmt: skip

    box = await ScriptedRunner(gw, "box", replies={"put_file": Reply(during=during)}).start()
    try:
        stand_in.seed_resource("om_t", "img_v3_00000000", PNG, "image/png")
        event = _post_with_image("om_t", "look", "img_v3_00000000")
        ack = await asyncio.to_thread(push, stand_in, event, "ev_t")
        assert ack.code == 200
        await asyncio.to_thread(
            stand_in.wait_for, lambda: "args" in seen and runs(home) != [], 30 * SCALE
        )
    finally:
        await box.aclose()
        await evil.aclose()
    assert seen["evil"] == ["not_found", "not_found"]
    assert (seen["data"], seen["eof"]) == (PNG, True)
    assert seen["push"] == "not_found"
    assert seen["args"]["sha256"] == hashlib.sha256(PNG).hexdigest()
