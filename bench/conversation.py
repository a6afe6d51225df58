"""Conversations: a webhook message in -> the run's first event at a subscribed client,
against the same client's own ``run.create``; and messages per second across many
conversations with nothing lost.

    python bench/conversation.py [--quick] [--out FILE]

A real gateway (SQLite) with one webhook channel whose replies go to a receiver in this
process; the ``operator`` agent answers ``help`` without a runner.

1. Latency: one conversation whose session an admin client follows (``run.subscribe``).
   Each sample POSTs a signed message and times until the ``run.queued`` event of the
   run it starts reaches the client; the baseline is the same client's ``run.create`` in
   the same session, timed to the same event. The two are interleaved sample by sample,
   each waiting for its run's reply to reach the receiver (the gateway is quiet when the
   next starts). Target: webhook p50 <= 5 ms.
3. Status in place: a fast-streaming ``script`` agent (750 deltas over ~3 s) on a
   channel that edits (``edit_interval = 1``): status edits per run and per second.

2. Throughput: 100 conversations (one linked sender each), every message POSTed with up
   to 64 in flight. Timed from the first POST to the last reply delivered to the
   receiver; zero loss means every message has exactly one run and one reply. Baseline:
   as many runs started with ``run.create`` (64 in flight) in 100 sessions, timed to the
   last run's end; gateway CPU per message against CPU per run.

Results: bench/results/conversation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Gateway,
    cpu_seconds,
    percentile,
    print_table,
    short_tempdir,
    verdict,
    write_json,
)
from tether.channels.webhook.events import sign
from tether.protocol.access import UserAddParams
from tether.protocol.chat import UserLinkParams
from tether.protocol.methods import (
    RUN_CREATE,
    RUN_EVENT,
    RUN_GET,
    RUN_SUBSCRIBE,
    USER_ADD,
    USER_LINK,
    Method,
)
from tether.protocol.runs import RunCreateParams, RunEventNote, RunGetParams, RunSubscribeParams
from tether.transport.client import connect_ipc
from tether.transport.connection import Handler

SECRET = "bench-secret-" + "b" * 40


class Receiver:
    """The system the webhook channel delivers replies to."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[float]] = {}
        """Status deliveries per run: when each arrived."""
        self.replies: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        """Replies per message they answer (``reply_to``)."""
        self.count = 0
        self.changed = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]

    async def hook(self, request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        if data["kind"] == "status":
            self.statuses.setdefault(data["run_id"], []).append(time.perf_counter())
        if data["kind"] == "reply":
            self.replies[data["run_id"]] = self.replies.get(data["run_id"], 0) + 1
            to = data["reply_to"] or ""
            self.answered[to] = self.answered.get(to, 0) + 1
        self.count += 1
        self.changed.set()
        return web.json_response({"message_id": str(self.count)})

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Events:
    """Routes ``run.event`` notifications: the time each run's first event arrived."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.runs: asyncio.Queue[str] = asyncio.Queue()

    def route(self, method: Method[Any, Any]) -> Handler | None:
        return self._event if method is RUN_EVENT else None

    def _event(self, note: RunEventNote) -> None:
        event = note.event
        if event.kind == "run.queued":
            self.first[event.run_id] = time.perf_counter()
            self.runs.put_nowait(event.run_id)
        elif event.kind in ("run.succeeded", "run.failed"):
            self.ended[event.run_id] = time.perf_counter()


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], channel: str = "bench"
) -> None:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sign(SECRET.encode(), raw, time.time())}
    async with http.post(f"{url}/channels/webhook/{channel}", data=raw, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


def message(event_id: str, chat: str, sender: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "chat": {"id": chat},
        "sender": {"id": sender},
        "text": "help",
        "message_id": event_id,
    }


async def wait_until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark stalled")
        await asyncio.sleep(0.001)


async def bench(quick: bool) -> dict[str, Any]:
    samples = 60 if quick else 300
    conversations, per = (100, 3) if quick else (100, 10)
    receiver = Receiver()
    await receiver.start()
    with short_tempdir() as home:
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

[channels.webhook.stream]
secret_env = "BENCH_WEBHOOK_SECRET"
url = "{receiver.url}"
status = "edit"
edit_interval = 1.0

[channels.webhook.stream.defaults]
agent = "script"
"""
        )
        gw = Gateway(home, BENCH_WEBHOOK_SECRET=SECRET, TETHER_RUNS__FIXTURE_ROLES="admin,member")
        events = Events()
        try:
            url = gw.info["url"]
            socket = str(home / "run" / "gateway.sock")
            admin = await connect_ipc(socket, router=events)
            await admin.call(USER_ADD, UserAddParams(name="bench"))
            for i in range(conversations):
                await admin.call(
                    USER_LINK, UserLinkParams(user="bench", channel="webhook.bench", id=f"s{i}")
                )
            async with aiohttp.ClientSession() as http:
                # the latency conversation: its session, followed by the admin client
                await post(http, url, message("warm", "c-lat", "s0"))
                await wait_until(lambda: receiver.replies)
                run_id = next(iter(receiver.replies))
                session_id = (await admin.call(RUN_GET, RunGetParams(run_id=run_id))).session_id
                await admin.call(RUN_SUBSCRIBE, RunSubscribeParams(session_id=session_id))
                await wait_until(lambda: run_id in events.ended)
                while not events.runs.empty():
                    events.runs.get_nowait()
                hook_ms: list[float] = []
                create_ms: list[float] = []
                for n in range(samples):
                    t0 = time.perf_counter()
                    await post(http, url, message(f"lat-{n}", "c-lat", "s0"))
                    rid = await asyncio.wait_for(events.runs.get(), 10)
                    hook_ms.append((events.first[rid] - t0) * 1000)
                    await wait_until(lambda rid=rid: rid in receiver.replies)  # all quiet
                    t0 = time.perf_counter()
                    await admin.call(
                        RUN_CREATE, RunCreateParams(input="help", session_id=session_id)
                    )
                    rid = await asyncio.wait_for(events.runs.get(), 10)
                    create_ms.append((events.first[rid] - t0) * 1000)
                    await wait_until(lambda rid=rid: rid in receiver.replies)

                # throughput: many conversations at once
                total = conversations * per

                def answered() -> list[int]:
                    return [v for k, v in receiver.answered.items() if k.startswith("tp-")]

                gate = asyncio.Semaphore(64)

                async def one(i: int, k: int) -> None:
                    async with gate:
                        await post(http, url, message(f"tp-{i}-{k}", f"c{i}", f"s{i}"))

                delivered0 = receiver.count
                cpu0 = cpu_seconds(gw.pid)
                t0 = time.perf_counter()
                await asyncio.gather(*(one(i, k) for k in range(per) for i in range(conversations)))
                posted = time.perf_counter() - t0
                await wait_until(lambda: len(answered()) >= total, 120)
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(gw.pid) - cpu0
                delivered = receiver.count - delivered0
                await asyncio.sleep(0.5)
                new = answered()

                # baseline: the same runs started with run.create, in 100 sessions
                sids: list[str] = []
                for _ in range(conversations):
                    created = await admin.call(RUN_CREATE, RunCreateParams(input="help"))
                    sids.append(created.run.session_id)
                    await admin.call(
                        RUN_SUBSCRIBE,
                        RunSubscribeParams(
                            session_id=created.run.session_id, since_run=created.run.id
                        ),
                    )
                await wait_until(lambda: len(events.ended) >= samples * 2 + 1 + conversations)
                ended = len(events.ended)

                async def make(i: int) -> None:
                    async with gate:
                        await admin.call(
                            RUN_CREATE, RunCreateParams(input="help", session_id=sids[i])
                        )

                cpu0 = cpu_seconds(gw.pid)
                t0 = time.perf_counter()
                await asyncio.gather(*(make(i) for _ in range(per) for i in range(conversations)))
                await wait_until(lambda: len(events.ended) - ended >= total, 120)
                base_elapsed = time.perf_counter() - t0
                base_cpu = cpu_seconds(gw.pid) - cpu0

                # status edits under a fast-streaming agent (one edit a second at most)
                await admin.call(
                    USER_LINK, UserLinkParams(user="bench", channel="webhook.stream", id="s0")
                )
                script = "\n".join(["events 50 32", "sleep 0.2"] * 15 + ["say streamed"])
                stream_runs = 3 if quick else 5
                for n in range(stream_runs):
                    # a conversation each: the script agent takes steering, so a second
                    # message in one conversation would join the first run
                    body = message(f"st-{n}", f"c-stream-{n}", "s0") | {"text": script}
                    await post(http, url, body, channel="stream")
                await wait_until(
                    lambda: (
                        len([r for r in receiver.answered if r.startswith("st-")]) >= stream_runs
                    ),
                    120,
                )
                await asyncio.sleep(1.5)
                edits = [len(v) for v in receiver.statuses.values()]
                # gaps between updates while a run goes on (the final state comes at once)
                gaps = [
                    b - a for v in receiver.statuses.values() for a, b in itertools.pairwise(v[:-1])
                ]
            await admin.aclose()
        finally:
            gw.close()
            await receiver.aclose()
    lost = total - len(new)
    doubled = sum(1 for v in new if v > 1)
    return {
        "latency": {
            "samples": samples,
            "webhook_p50_ms": percentile(hook_ms, 50),
            "webhook_p99_ms": percentile(hook_ms, 99),
            "run_create_p50_ms": percentile(create_ms, 50),
            "run_create_p99_ms": percentile(create_ms, 99),
            "ratio_p50": percentile(hook_ms, 50) / percentile(create_ms, 50),
            "target_p50_ms": 5.0,
        },
        "throughput": {
            "conversations": conversations,
            "messages": total,
            "accepted_per_s": total / posted,
            "answered_per_s": total / elapsed,
            "lost": lost,
            "duplicated": doubled,
            "gateway_cpu_ms_per_message": cpu / total * 1000,
            "run_create_per_s": total / base_elapsed,
            "run_create_cpu_ms_per_run": base_cpu / total * 1000,
            "cpu_ratio": (cpu / total) / (base_cpu / total),
            "deliveries": delivered,
            "deliveries_per_s": delivered / elapsed,
        },
        "status": {
            "runs": len(edits),
            "deltas_per_run": 50 * 15,
            "edits_per_run": sum(edits) / max(1, len(edits)),
            "min_gap_s": min(gaps) if gaps else float("nan"),
            "median_gap_s": statistics.median(gaps) if gaps else float("nan"),
            "interval_s": 1.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = asyncio.run(bench(args.quick))
    lat, tp = result["latency"], result["throughput"]
    print_table(
        "webhook message -> first run event at a subscribed client (ms)",
        ["path", "p50", "p99"],
        [
            ["webhook POST", lat["webhook_p50_ms"], lat["webhook_p99_ms"]],
            ["run.create (baseline)", lat["run_create_p50_ms"], lat["run_create_p99_ms"]],
        ],
    )
    print(
        f"  ratio p50 {lat['ratio_p50']:.2f}x; target webhook p50 <= 5 ms: "
        f"{verdict(lat['webhook_p50_ms'] <= 5.0)}"
    )
    print_table(
        f"{tp['messages']} messages across {tp['conversations']} conversations",
        ["path", "per s", "gateway CPU ms each", "lost", "duplicated"],
        [
            [
                "webhook message -> reply",
                tp["answered_per_s"],
                tp["gateway_cpu_ms_per_message"],
                tp["lost"],
                tp["duplicated"],
            ],
            [
                "run.create -> run end (baseline)",
                tp["run_create_per_s"],
                tp["run_create_cpu_ms_per_run"],
                "-",
                "-",
            ],
        ],
    )
    print(
        f"  webhook messages accepted (receipt durable) at {tp['accepted_per_s']:.0f}/s; "
        f"CPU per message {tp['cpu_ratio']:.2f}x a run.create"
    )
    print(
        f"  zero loss: {verdict(tp['lost'] == 0 and tp['duplicated'] == 0)}; outbox "
        f"{tp['deliveries']} deliveries at {tp['deliveries_per_s']:.0f}/s to the receiver"
    )
    st = result["status"]
    print_table(
        f"status in place: a fast-streaming agent ({st['deltas_per_run']} deltas a run)",
        ["runs", "updates per run", "min gap s", "median gap s", "edit interval s"],
        [[st["runs"], st["edits_per_run"], st["min_gap_s"], st["median_gap_s"], st["interval_s"]]],
    )
    print(f"  within the rate: {verdict(st['min_gap_s'] >= 0.9 * st['interval_s'])}")
    write_json("conversation", result, args.out)


if __name__ == "__main__":
    main()
