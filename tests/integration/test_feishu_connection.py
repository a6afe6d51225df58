"""Feishu's long connection: the real ``lark-oapi`` WebSocket client, in its own thread,
against the stand-in. An event is acked only once the gateway's handler has taken it; a
failing or too slow handler acks 500 so Feishu redelivers; card frames (which the stock
client drops) and fragmented events are handled; a dropped connection comes back; the
watchdog restarts a client that gave up; and stop() ends it all."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.feishu import FeishuStandIn, stand_in
from tether.channels.feishu.connection import LongConnection

__all__ = ["stand_in"]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class Gateway:
    """What the gateway would do with each event: record it, answer a card."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.delay = 0.0
        self.fail = False
        self.taken = asyncio.Event()

    async def handle(self, envelope: dict[str, Any], kind: str) -> dict[str, Any] | None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the ledger is down")
        self.seen.append((kind, envelope))
        self.taken.set()
        return {"toast": {"type": "info", "content": "ok"}} if kind == "card" else None


@pytest.fixture
async def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
async def connection(stand_in: FeishuStandIn, gateway: Gateway) -> AsyncIterator[LongConnection]:
    conn = LongConnection(
        stand_in.app_id,
        stand_in.app_secret,
        domain=stand_in.url,
        handle=gateway.handle,
        loop=asyncio.get_running_loop(),
        ack_budget=1.0,
        dead_after=1.0,
    )
    await asyncio.to_thread(conn.start)
    # (both ends: the server may see the socket a moment before the client holds it)
    await asyncio.to_thread(
        stand_in.wait_for, lambda: stand_in.connected == 1 and conn.connected, 30
    )
    try:
        yield conn
    finally:
        await asyncio.to_thread(conn.stop)


MESSAGE = {
    "sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": "user"},
    "message": {
        "message_id": "om_1",
        "chat_id": "oc_1",
        "chat_type": "p2p",
        "message_type": "text",
        "content": '{"text":"hi"}',
    },
}


async def ack_of(stand_in: FeishuStandIn, **push: Any) -> Any:
    return await asyncio.wait_for(asyncio.wrap_future(stand_in.push(**push)), 10)


async def test_an_event_is_acked_after_the_gateway_took_it(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    assert connection.connected
    gateway.delay = 0.3  # the ack waits for the handler, not less
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE, event_id="ev_1")
    assert ack.code == 200
    assert int(ack.headers["biz_rt"]) >= 300
    [(kind, envelope)] = gateway.seen
    assert kind == "event"
    assert envelope["header"]["event_id"] == "ev_1"
    assert envelope["event"]["message"]["content"] == '{"text":"hi"}'


async def test_a_failing_or_too_slow_gateway_acks_500_so_feishu_delivers_again(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    gateway.fail = True
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
    assert ack.code == 500
    gateway.fail, gateway.delay = False, 3.0  # past the 1 s budget here (3 s at Feishu)
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
    assert ack.code == 500
    gateway.delay = 0.0
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
    assert ack.code == 200


async def test_a_slow_event_holds_up_neither_other_events_nor_pings(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    gateway.delay = 0.8
    slow = stand_in.push(event_type="im.message.receive_v1", event=MESSAGE, event_id="slow")
    await asyncio.sleep(0.1)
    gateway.delay = 0.0
    fast = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
    assert fast.code == 200
    assert not slow.done()  # the fast one was answered while the slow one still waited
    assert (await asyncio.wrap_future(slow)).code == 200


async def test_a_card_frame_is_dispatched_and_acked_with_the_callbacks_answer(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    click = {"operator": {"open_id": "ou_alice"}, "action": {"value": {"request": "r1"}}}
    ack = await ack_of(stand_in, event_type="card.action.trigger", event=click, frame_type="card")
    assert ack.code == 200
    assert ack.data == {"toast": {"type": "info", "content": "ok"}}
    assert gateway.seen[0][0] == "card"


async def test_a_fragmented_event_arrives_whole_and_a_frame_missing_a_header_is_dropped(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    big = {**MESSAGE, "message": {**MESSAGE["message"], "content": '{"text":"' + "x" * 5000 + '"}'}}
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=big, fragments=3)
    assert ack.code == 200
    assert len(gateway.seen) == 1
    assert gateway.seen[0][1]["event"]["message"]["content"] == big["message"]["content"]
    broken = stand_in.push(
        event_type="im.message.receive_v1", event=MESSAGE, drop_header="trace_id"
    )
    await asyncio.sleep(0.5)
    assert not broken.done()  # no ack (as the SDK does): Feishu will deliver it again
    assert len(gateway.seen) == 1


async def test_a_dropped_connection_comes_back_and_the_next_event_is_taken(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    stand_in.drop_connections()
    await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connects == 2, 20)
    await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 1, 20)
    ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
    assert ack.code == 200
    assert connection.restarts == 0  # the SDK reconnected by itself


async def test_the_watchdog_restarts_a_client_that_gave_up(
    connection: LongConnection, stand_in: FeishuStandIn, gateway: Gateway
) -> None:
    watchdog = asyncio.create_task(connection.watch(interval=0.2))
    try:
        # discovery now fails for good: the SDK's reconnect gives up, its thread ends
        stand_in.discovery_code = 1000040344
        stand_in.drop_connections()
        await asyncio.sleep(1.5)
        assert not connection.connected
        stand_in.discovery_code = 0  # Feishu is back
        await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 1, 30)
        assert connection.restarts >= 1
        ack = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
        assert ack.code == 200
    finally:
        watchdog.cancel()


async def test_stop_disconnects_and_ends_the_thread(
    connection: LongConnection, stand_in: FeishuStandIn
) -> None:
    await asyncio.to_thread(connection.stop)
    assert not connection.alive
    await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 0, 10)
    await asyncio.sleep(1.5)  # and it does not come back by itself
    assert stand_in.connected == 0


async def test_the_stock_client_drops_card_frames_which_is_why_tether_subclasses_it(
    stand_in: FeishuStandIn,
) -> None:
    # (the SDK's own client, as shipped: a card frame is neither dispatched nor acked,
    # and an event type with no processor acks 500)
    import lark_oapi as lark
    import lark_oapi.ws.client as ws_client

    started = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_client.loop = loop
        handler = lark.EventDispatcherHandler.builder("", "").build()
        client = ws_client.Client(stand_in.app_id, stand_in.app_secret, event_handler=handler,
                                  domain=stand_in.url, log_level=lark.LogLevel.ERROR)  # fmt: skip
        holder.update(client=client, loop=loop)
        started.set()
        with contextlib.suppress(RuntimeError):
            client.start()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(30)
    try:
        await asyncio.to_thread(stand_in.wait_for, lambda: stand_in.connected == 1, 30)
        card = stand_in.push(event_type="card.action.trigger", event={}, frame_type="card")
        unknown = await ack_of(stand_in, event_type="im.message.receive_v1", event=MESSAGE)
        assert unknown.code == 500  # no processor registered: Feishu would redeliver
        await asyncio.sleep(0.5)
        assert not card.done()  # dropped: the user would see an error on the click
    finally:
        client, loop = holder["client"], holder["loop"]
        client._auto_reconnect = False
        asyncio.run_coroutine_threadsafe(client._disconnect(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
