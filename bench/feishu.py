"""The Feishu channel: an inbound event to the first reply sent, and messages per second
across 50 chats without one rate-limit error, against the same gateway's webhook channel.

    python bench/feishu.py [--quick] [--out FILE]

A real gateway (SQLite) whose Feishu channel is the tests' stand-in
(``tests/support/feishu.py``) driven by the real ``lark-oapi`` SDK: events arrive over
its long connection, replies go out through its API client. The same gateway has a
webhook channel whose replies go to a receiver in this process: the baseline, the same
conversation path without Feishu. The ``operator`` agent answers ``help`` without a
runner.

1. Latency: each sample pushes one direct message and times until the stand-in receives
   the run's status card and its reply (the stand-in's own clock; target for the card:
   50 ms); the baseline POSTs the same message to the
   webhook channel and times until its reply reaches the receiver. Interleaved, each
   waiting for its reply. Target: none stated (reported as a ratio to the webhook).
2. Throughput: 50 chats (one linked sender each), every message pushed with up to 64
   unacknowledged. Timed from the first push to the last reply; the stand-in refuses
   sends over Feishu's own limits (5 a second per chat, 50 for the app) and every refusal
   is counted: the target is zero. A message that finds its chat busy is answered
   "Queued" first, so sends outnumber messages. Baseline: the same messages through the
   webhook channel. tether paces the app at 40 sends a second: the ceiling here.

Results: bench/results/feishu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' stand-in
from tests.support.feishu import FeishuStandIn, feishu_stand_in

from common import Gateway, percentile, print_table, short_tempdir, verdict, write_json
from conversation import SECRET, Receiver, post
from conversation import message as hook_message
from tether.protocol.access import UserAddParams
from tether.protocol.chat import UserLinkParams
from tether.protocol.methods import USER_ADD, USER_LINK
from tether.transport.client import connect_ipc

CHATS = 50
ANSWER = "type what should run"  # the operator agent's answer to "help"
APP_PACE = 40.0


class FirstReplies(Receiver):
    """The webhook receiver, noting when the first delivery answering each message came."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        data = await request.json()
        self.first.setdefault(data.get("reply_to") or "", arrived)
        return await super().hook(request)


def event(text: str, message_id: str, chat: str, sender: str) -> dict[str, Any]:
    import json

    return {
        "sender": {"sender_id": {"open_id": sender}, "sender_type": "user"},
        "message": {
            "message_id": message_id,
            "chat_id": chat,
            "chat_type": "p2p",
            "message_type": "text",
            "content": json.dumps({"text": text}),
            "create_time": str(int(time.time() * 1000)),
        },
    }


def first_reply(stand_in: FeishuStandIn, message_id: str) -> float | None:
    path = f"/open-apis/im/v1/messages/{message_id}/reply"
    return next((c.at for c in list(stand_in.calls) if c.path == path), None)


def status_card(stand_in: FeishuStandIn, chat: str, after: float) -> float | None:
    """When the first status card created in ``chat`` after ``after`` reached the stand-in."""
    for c in list(stand_in.calls):
        body = c.body if isinstance(c.body, dict) else {}
        if (
            c.at > after
            and c.path == "/open-apis/im/v1/messages"
            and body.get("msg_type") == "interactive"
            and body.get("receive_id") == chat
        ):
            return c.at
    return None


def replies(stand_in: FeishuStandIn, prefix: str) -> dict[str, int]:
    """The agent's replies per message they answer (a "Queued" notice is not one)."""
    counts: dict[str, int] = {}
    for m in list(stand_in.messages.values()):
        to = m.get("reply_to") or ""
        if to.startswith(prefix) and ANSWER in m.get("content", ""):
            counts[to] = counts.get(to, 0) + 1
    return counts


def sends(stand_in: FeishuStandIn, prefix: str) -> int:
    """Messages sent in answer to those messages: replies and notices."""
    return sum(
        1 for m in list(stand_in.messages.values()) if (m.get("reply_to") or "").startswith(prefix)
    )


async def wait_until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark stalled")
        await asyncio.sleep(0.002)


async def bench(quick: bool) -> dict[str, Any]:
    samples = 30 if quick else 150
    per = 4 if quick else 10
    receiver = FirstReplies()
    await receiver.start()
    with feishu_stand_in() as stand_in, short_tempdir() as home:
        (home / "config").mkdir()
        (home / "config" / "config.toml").write_text(
            f"""
[channels]
queue_limit = 1000

[channels.webhook.bench]
secret_env = "BENCH_WEBHOOK_SECRET"
url = "{receiver.url}"

[channels.webhook.bench.defaults]
agent = "operator"

[channels.feishu]
app_id = "{stand_in.app_id}"
app_secret_env = "BENCH_FEISHU_SECRET"
domain = "{stand_in.url}"

[channels.feishu.defaults]
agent = "operator"
"""
        )
        gw = Gateway(
            home,
            BENCH_WEBHOOK_SECRET=SECRET,
            BENCH_FEISHU_SECRET=stand_in.app_secret,
            NO_PROXY="127.0.0.1,localhost",
        )
        try:
            await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 1, 60)
            admin = await connect_ipc(str(home / "run" / "gateway.sock"))
            await admin.call(USER_ADD, UserAddParams(name="bench"))
            for i in range(CHATS):
                for channel, sender in (("feishu", f"ou_b{i}"), ("webhook.bench", f"s{i}")):
                    await admin.call(
                        USER_LINK, UserLinkParams(user="bench", channel=channel, id=sender)
                    )
            async with aiohttp.ClientSession() as http:
                url = gw.info["url"]
                # warm both paths (the SDK's token, the sessions)
                await asyncio.to_thread(
                    lambda: stand_in.push(
                        "im.message.receive_v1", event("help", "om_warm", "oc_lat", "ou_b0")
                    ).result(10)
                )
                await wait_until(lambda: first_reply(stand_in, "om_warm") is not None)
                await post(http, url, hook_message("warm", "c-lat", "s0"))
                await wait_until(lambda: "warm" in receiver.first)

                feishu_ms: list[float] = []
                card_ms: list[float] = []
                hook_ms: list[float] = []
                for n in range(samples):
                    mid = f"om_lat{n}"
                    t0 = time.monotonic()
                    await asyncio.to_thread(
                        lambda mid=mid: stand_in.push(  # type: ignore[misc]
                            "im.message.receive_v1", event("help", mid, "oc_lat", "ou_b0")
                        ).result(10)
                    )
                    await wait_until(lambda mid=mid: first_reply(stand_in, mid) is not None)
                    feishu_ms.append((first_reply(stand_in, mid) - t0) * 1000)  # type: ignore[operator]
                    card = status_card(stand_in, "oc_lat", t0)
                    if card is not None:
                        card_ms.append((card - t0) * 1000)
                    t0 = time.monotonic()
                    await post(http, url, hook_message(f"lat-{n}", "c-lat", "s0"))
                    await wait_until(lambda n=n: f"lat-{n}" in receiver.first)
                    hook_ms.append((receiver.first[f"lat-{n}"] - t0) * 1000)
                    await asyncio.sleep(0.3)  # past the chat's pace: each sample unpaced

                # throughput: 50 chats at once, through Feishu, then through the webhook
                total = CHATS * per
                violations0 = len(stand_in.rate_violations)

                def push_all() -> None:
                    acks = []
                    for k in range(per):
                        for i in range(CHATS):
                            body = event("help", f"om_tp{i}_{k}", f"oc_tp{i}", f"ou_b{i}")
                            acks.append(stand_in.push("im.message.receive_v1", body))
                            if len(acks) >= 64:
                                acks.pop(0).result(30)
                    for ack in acks:
                        ack.result(30)

                t0 = time.monotonic()
                await asyncio.to_thread(push_all)
                pushed = time.monotonic() - t0
                await wait_until(lambda: len(replies(stand_in, "om_tp")) >= total, 300)
                elapsed = time.monotonic() - t0
                await asyncio.sleep(1.0)
                answered = replies(stand_in, "om_tp")
                sent = sends(stand_in, "om_tp")
                violations = stand_in.rate_violations[violations0:]

                gate = asyncio.Semaphore(64)

                async def one(i: int, k: int) -> None:
                    async with gate:
                        await post(http, url, hook_message(f"tp-{i}-{k}", f"c{i}", f"s{i}"))

                t0 = time.monotonic()
                await asyncio.gather(*(one(i, k) for k in range(per) for i in range(CHATS)))
                await wait_until(
                    lambda: len([k for k in receiver.answered if k.startswith("tp-")]) >= total,
                    300,
                )
                base_elapsed = time.monotonic() - t0
            await admin.aclose()
        finally:
            gw.close()
            await receiver.aclose()
    return {
        "latency": {
            "samples": samples,
            "feishu_p50_ms": percentile(feishu_ms, 50),
            "feishu_p90_ms": percentile(feishu_ms, 90),
            "webhook_p50_ms": percentile(hook_ms, 50),
            "webhook_p90_ms": percentile(hook_ms, 90),
            "ratio_p50": percentile(feishu_ms, 50) / percentile(hook_ms, 50),
            "status_card_p50_ms": percentile(card_ms, 50),
            "status_card_p90_ms": percentile(card_ms, 90),
            "status_card_target_ms": 50.0,
        },
        "throughput": {
            "chats": CHATS,
            "messages": total,
            "accepted_per_s": total / pushed,
            "sends": sent,
            "sends_per_s": sent / elapsed,
            "answered_per_s": total / elapsed,
            "lost": total - len(answered),
            "duplicated": sum(1 for v in answered.values() if v > 1),
            "rate_limit_errors": len(violations),
            "rate_limited": sorted(set(violations)),
            "webhook_answered_per_s": total / base_elapsed,
            "ratio": (total / elapsed) / (total / base_elapsed),
            "pace_ceiling_per_s": APP_PACE,
            "of_ceiling": (sent / elapsed) / APP_PACE,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and messages")
    parser.add_argument("--out", help="JSON file (default bench/results/feishu.json)")
    args = parser.parse_args()
    results = asyncio.run(bench(args.quick))
    lat, tp = results["latency"], results["throughput"]
    print_table(
        "inbound event -> first reply sent (ms)",
        ["path", "p50", "p90", "vs webhook"],
        [
            ["Feishu (long connection, SDK)", lat["feishu_p50_ms"], lat["feishu_p90_ms"],
             f"{lat['ratio_p50']:.2f}x"],
            ["webhook channel (baseline)", lat["webhook_p50_ms"], lat["webhook_p90_ms"], "1.00x"],
            ["Feishu: the run's status card created", lat["status_card_p50_ms"],
             lat["status_card_p90_ms"],
             f"target 50 ms: {verdict(lat['status_card_p50_ms'] <= 50.0)}"],
        ],
    )  # fmt: skip
    print_table(
        f"{tp['messages']} messages across {tp['chats']} chats",
        ["path", "answered/s", "sends/s", "lost", "twice", "rate-limit errors"],
        [
            ["Feishu", tp["answered_per_s"], tp["sends_per_s"], tp["lost"], tp["duplicated"],
             tp["rate_limit_errors"]],
            ["webhook channel (baseline)", tp["webhook_answered_per_s"], "", "", "", ""],
        ],
    )  # fmt: skip
    ok = tp["rate_limit_errors"] == 0 and tp["lost"] == 0 and tp["duplicated"] == 0
    print(
        f"\nFeishu throughput is {tp['ratio']:.2f}x the webhook's and "
        f"its sends {tp['of_ceiling']:.0%} of the {tp['pace_ceiling_per_s']:.0f}/s pace; "
        f"zero rate-limit errors, nothing lost or doubled: {verdict(ok)}"
        + (f" (refused: {', '.join(tp['rate_limited'])})" if tp["rate_limited"] else "")
    )
    write_json("feishu", results, args.out)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
