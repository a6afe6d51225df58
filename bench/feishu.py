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
3. Streaming: with ``streaming = true``, chats of their own run the ``script`` agent,
   which streams a long reply fast (500 deltas over ~3 s; 3 runs at once). Per run:
   the status card's PATCHes and the reply card's CardKit content updates, the most of
   each in any one second (Feishu allows 5 PATCHes a second to one message and 10
   content updates a second to one card), whether the card ends holding the complete
   reply (streaming off), and the stand-in's refusals. Target: within both limits, every
   reply complete, zero refusals. Calls are counted as they reach the stand-in, refused
   ones too; "streamed s" runs from the reply card's message to its last content update.
   (The ``operator`` agent writes no deltas: for it ``streaming = true`` changes nothing.)

Results: bench/results/feishu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from tether.channels.feishu.cards import STREAM_ELEMENT
from tether.protocol.access import UserAddParams
from tether.protocol.chat import UserLinkParams
from tether.protocol.methods import USER_ADD, USER_LINK
from tether.transport.client import connect_ipc

CHATS = 50
ANSWER = "type what should run"  # the operator agent's answer to "help"
APP_PACE = 40.0
PATCH_LIMIT = 5  # PATCHes a second to one message, as Feishu allows
CARDKIT_LIMIT = 10  # CardKit content updates a second to one card
BATCHES, DELTAS, DELTA_BYTES, PAUSE = 20, 25, 20, 0.15  # 500 deltas over ~3 s
WAVE = 3  # streaming runs at once


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


def stream_script(n: int) -> tuple[str, str]:
    """The ``script`` agent's input for streaming run ``n``, and its complete reply: what
    streamed (``x`` per delta byte) and an ending of its own."""
    final = "x" * (BATCHES * DELTAS * DELTA_BYTES) + f" end-of-reply-{n}"
    lines = [f"events {DELTAS} {DELTA_BYTES}", f"sleep {PAUSE}"] * BATCHES + [f"say {final}"]
    return "\n".join(lines), final


def peak(times: list[float]) -> int:
    """The most calls in any one second (a window ``(t - 1, t]``, as the stand-in counts)."""
    ordered = sorted(times)
    best = start = 0
    for i, t in enumerate(ordered):
        while ordered[start] <= t - 1.0:
            start += 1
        best = max(best, i - start + 1)
    return best


def in_chat(stand_in: FeishuStandIn, chat: str) -> dict[str, dict[str, Any]]:
    """The messages sent to ``chat`` (created in it, or replies to a message in it)."""
    return {
        mid: m
        for mid, m in list(stand_in.messages.items())
        if m.get("receive_id") == chat
        or (m.get("reply_to") and stand_in.chat_of.get(m["reply_to"]) == chat)
    }


def referenced(body: Any) -> str | None:
    """The CardKit card a message's body sends by reference, if it does."""
    if not isinstance(body, dict) or body.get("msg_type") != "interactive":
        return None
    content = json.loads(body.get("content") or "{}")
    return content["data"]["card_id"] if content.get("type") == "card" else None


def stream_cards(stand_in: FeishuStandIn, chat: str) -> dict[str, str]:
    """The CardKit cards sent to ``chat`` by reference: card id -> its message id."""
    return {
        card: mid
        for mid, m in in_chat(stand_in, chat).items()
        if (card := referenced(m)) is not None
    }


def stream_done(stand_in: FeishuStandIn, chat: str) -> bool:
    """The run's reply is out: its card no longer streams, or it was posted."""
    cards = [stand_in.card_entities.get(c) for c in stream_cards(stand_in, chat)]
    posted = any(m.get("msg_type") == "post" for m in in_chat(stand_in, chat).values())
    return posted or any(e is not None and not e["streaming"] for e in cards)


def stream_run(
    stand_in: FeishuStandIn, chat: str, final: str, violations: list[str]
) -> dict[str, Any]:
    """One streaming run, as the stand-in saw it."""
    calls = list(stand_in.calls)
    messages = in_chat(stand_in, chat)
    cards = stream_cards(stand_in, chat)
    statuses = [
        mid
        for mid, m in messages.items()
        if m.get("msg_type") == "interactive" and mid not in cards.values()
    ]
    patches = {
        mid: [c.at for c in calls if c.method == "PATCH" and c.path == f"/open-apis/im/v1/messages/{mid}"]
        for mid in statuses
    }  # fmt: skip
    updates = {
        card: [
            c.at
            for c in calls
            if c.method == "PUT" and c.path.startswith(f"/open-apis/cardkit/v1/cards/{card}/elements/")
        ]
        for card in cards
    }  # fmt: skip
    ops = {
        card: [c.at for c in calls if c.path.startswith(f"/open-apis/cardkit/v1/cards/{card}/")]
        for card in cards
    }
    sent = [  # each card's reference message: when the reply started to show
        c.at for c in calls if c.method == "POST" and referenced(c.body) in cards
    ]
    entities = [stand_in.card_entities[c] for c in cards if c in stand_in.card_entities]
    complete = len(entities) == 1 and (
        entities[0]["texts"].get(STREAM_ELEMENT) == final and not entities[0]["streaming"]
    )
    mine = {chat, *(f"patch:{m}" for m in statuses)}
    mine |= {f"{kind}:{c}" for c in cards for kind in ("cardkit", "sequence")}
    first = min(sent, default=None)
    last = max((t for v in updates.values() for t in v), default=None)
    return {
        "chat": chat,
        "status_cards": len(statuses),
        "status_patches": sum(len(v) for v in patches.values()),
        "status_patches_accepted": sum(messages[m].get("patches", 0) for m in statuses),
        "status_patch_peak_per_s": max((peak(v) for v in patches.values()), default=0),
        "cards": len(cards),
        "cardkit_updates": sum(len(v) for v in updates.values()),
        "cardkit_update_peak_per_s": max((peak(v) for v in updates.values()), default=0),
        "cardkit_op_peak_per_s": max((peak(v) for v in ops.values()), default=0),
        "streamed_s": (last - first) if first is not None and last is not None else None,
        "posts": sum(1 for m in messages.values() if m.get("msg_type") == "post"),
        "complete": complete,
        "refusals": sum(1 for v in violations if v in mine),
    }


async def wait_until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark stalled")
        await asyncio.sleep(0.002)


async def bench(quick: bool) -> dict[str, Any]:
    samples = 30 if quick else 150
    per = 4 if quick else 10
    stream_runs = 3 if quick else 9
    scripts = [stream_script(n) for n in range(stream_runs)]
    streamed_chats = "".join(
        f'\n[channels.feishu.conversations.oc_st{n}]\nagent = "script"\n'
        for n in range(stream_runs)
    )
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
streaming = true

[channels.feishu.defaults]
agent = "operator"
{streamed_chats}"""
        )
        gw = Gateway(
            home,
            BENCH_WEBHOOK_SECRET=SECRET,
            BENCH_FEISHU_SECRET=stand_in.app_secret,
            NO_PROXY="127.0.0.1,localhost",
            TETHER_RUNS__FIXTURE_ROLES="admin,member",  # the linked senders may use script
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

                # streaming: a fast-streaming agent in chats of its own, WAVE runs at a
                # time (with more at once, this 2-core machine slows the agent itself)
                violations0 = len(stand_in.rate_violations)

                def push_streams(wave: range) -> None:
                    for n in wave:
                        body = event(scripts[n][0], f"om_st{n}", f"oc_st{n}", f"ou_b{n}")
                        stand_in.push("im.message.receive_v1", body).result(10)

                def wave_done(wave: range) -> bool:
                    return all(stream_done(stand_in, f"oc_st{n}") for n in wave)

                t0 = time.monotonic()
                for first in range(0, stream_runs, WAVE):
                    wave = range(first, min(first + WAVE, stream_runs))
                    await asyncio.to_thread(push_streams, wave)
                    with contextlib.suppress(TimeoutError):  # a run not done: reported so
                        await wait_until(lambda wave=wave: wave_done(wave), 120)
                    await asyncio.sleep(1.5)  # the wave's last status edits
                stream_elapsed = time.monotonic() - t0
                violations = stand_in.rate_violations[violations0:]
                streams = [
                    stream_run(stand_in, f"oc_st{n}", final, violations)
                    for n, (_, final) in enumerate(scripts)
                ]
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
        "streaming": {
            "runs": stream_runs,
            "at_once": WAVE,
            "deltas_per_run": BATCHES * DELTAS,
            "reply_chars": len(scripts[0][1]),
            "elapsed_s": stream_elapsed,
            "patch_limit_per_s": PATCH_LIMIT,
            "cardkit_limit_per_s": CARDKIT_LIMIT,
            "rate_limit_errors": len(violations),
            "rate_limited": sorted(set(violations)),
            "per_run": streams,
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
    st = results["streaming"]
    runs = st["per_run"]
    print_table(
        f"{st['runs']} replies streamed, {st['at_once']} at once ({st['deltas_per_run']} deltas, "
        f"{st['reply_chars']:,} characters each): calls per run, and the most in one second",
        ["run", "streamed s", "status PATCHes", "max/s", "CardKit updates", "max/s",
         "complete", "refused"],
        [
            [r["chat"], "" if r["streamed_s"] is None else r["streamed_s"], r["status_patches"],
             r["status_patch_peak_per_s"], r["cardkit_updates"], r["cardkit_update_peak_per_s"],
             "yes" if r["complete"] else "NO", r["refusals"]]
            for r in runs
        ],
    )  # fmt: skip
    patch_peak = max((r["status_patch_peak_per_s"] for r in runs), default=0)
    update_peak = max((r["cardkit_update_peak_per_s"] for r in runs), default=0)
    stream_ok = (
        patch_peak <= st["patch_limit_per_s"]
        and update_peak <= st["cardkit_limit_per_s"]
        and all(r["complete"] and r["posts"] == 0 for r in runs)
        and st["rate_limit_errors"] == 0
    )
    print(
        f"\nStreaming: at most {patch_peak} PATCHes a second to a status card (limit "
        f"{st['patch_limit_per_s']}) and {update_peak} content updates a second to a reply card "
        f"(limit {st['cardkit_limit_per_s']}); {sum(r['complete'] for r in runs)} of "
        f"{len(runs)} cards end with the complete reply; {st['rate_limit_errors']} refused: "
        f"{verdict(stream_ok)}"
        + (f" (refused: {', '.join(st['rate_limited'])})" if st["rate_limited"] else "")
    )
    write_json("feishu", results, args.out)
    if not (ok and stream_ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
