"""RpcSession fed with frames: handshake, roles, params, responses, deadlines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.errors import ConnectionClosed, Forbidden, InvalidRequest
from tether.protocol.methods import GATEWAY_INFO, HELLO, METHODS, PING
from tether.protocol.session import (
    ErrorReceived,
    Ignored,
    NotificationReceived,
    PeerError,
    Rejected,
    RequestReceived,
    ResponseReceived,
    RpcSession,
)
from tether.protocol.system import PingParams, Pong


def frame(**fields: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", **fields})


def reply(event: Any) -> dict[str, Any]:
    assert isinstance(event, Rejected)
    assert event.reply is not None
    return json.loads(event.reply)


def server(peer: str | None = None) -> RpcSession[Any]:
    return RpcSession(local="gateway", peer=peer, max_frame_bytes=4096)


def test_hello_must_come_first_and_only_once() -> None:
    s = server()
    assert (
        reply(s.receive(frame(id=1, method="ping")))["error"]["data"]["code"] == "invalid_request"
    )
    event = s.receive(frame(id=2, method="hello", params={"protocol": [1], "role": "client"}))
    assert isinstance(event, RequestReceived)
    assert event.method is HELLO
    s.establish("client")
    assert (
        "already"
        in reply(
            s.receive(frame(id=3, method="hello", params={"protocol": [1], "role": "client"}))
        )["error"]["message"]
    )


def test_role_table_is_enforced() -> None:
    s = server("client")
    out = reply(s.receive(frame(id=1, method="gateway.info")))
    assert out["id"] == 1
    assert out["error"]["code"] == -32002
    assert out["error"]["data"] == {"code": "forbidden", "method": "gateway.info", "role": "client"}
    assert isinstance(server("admin").receive(frame(id=1, method="gateway.info")), RequestReceived)


def test_unknown_method_and_bad_params() -> None:
    s = server("admin")
    out = reply(s.receive(frame(id=1, method="nope")))
    assert out["error"]["code"] == -32601
    out = reply(s.receive(frame(id=2, method="ping", params={"payload": []})))
    assert out["error"]["code"] == -32602
    assert out["error"]["data"]["field"] == "params.payload"
    out = reply(s.receive(frame(id=3, method="ping", params=[1])))
    assert out["error"]["code"] == -32602
    out = reply(s.receive(frame(id=4, method="ping", params=None)))
    assert out["error"]["code"] == -32602


def test_missing_params_means_empty() -> None:
    event = server("admin").receive(frame(id=1, method="ping"))
    assert isinstance(event, RequestReceived)
    assert event.params == PingParams()


def test_request_used_as_notification_is_rejected_without_reply() -> None:
    event = server("admin").receive(frame(method="ping"))
    assert isinstance(event, Rejected)
    assert event.reply is None
    assert isinstance(event.error, InvalidRequest)


def test_parse_errors_reply_with_null_id() -> None:
    out = reply(server().receive("{oops"))
    assert out["id"] is None
    assert out["error"]["code"] == -32700


def test_client_side_calls_responses_and_timeouts() -> None:
    c: RpcSession[str] = RpcSession(local="admin", peer="gateway", max_frame_bytes=4096)
    call, data = c.request(PING, PingParams(payload="p"), deadline=10.0, waiter="w1")
    sent = json.loads(data)
    assert sent == {"jsonrpc": "2.0", "id": call.id, "method": "ping", "params": {"payload": "p"}}
    got = c.receive(frame(id=call.id, result={"server_time": 1.5, "version": "v", "payload": "p"}))
    assert isinstance(got, ResponseReceived)
    assert got.result == Pong(server_time=1.5, version="v", payload="p")
    assert got.call.waiter == "w1"
    # the same id again is late: ignored
    assert isinstance(c.receive(frame(id=call.id, result={})), Ignored)

    c.request(PING, PingParams(), deadline=5.0, waiter="w2")
    call3, _ = c.request(PING, PingParams(), deadline=20.0, waiter="w3")
    assert c.pending.next_deadline() == 5.0
    assert [p.waiter for p in c.pending.expire(6.0)] == ["w2"]
    assert c.pending.next_deadline() == 20.0
    err = c.receive(
        frame(
            id=call3.id,
            error={"code": -32016, "message": "bye", "data": {"code": "connection_closed"}},
        )
    )
    assert isinstance(err, ErrorReceived)
    assert isinstance(err.error, ConnectionClosed)
    assert len(c.pending) == 0


def test_bad_result_is_an_error_for_the_caller() -> None:
    c: RpcSession[None] = RpcSession(local="admin", peer="gateway", max_frame_bytes=4096)
    call, _ = c.request(PING, PingParams(), deadline=1.0, waiter=None)
    got = c.receive(frame(id=call.id, result={"server_time": "soon"}))
    assert isinstance(got, ErrorReceived)
    assert got.error.code == "invalid_params"


def test_null_id_error_is_a_peer_error() -> None:
    c: RpcSession[None] = RpcSession(local="admin", peer="gateway", max_frame_bytes=4096)
    got = c.receive(
        frame(id=None, error={"code": -32007, "message": "full", "data": {"code": "overloaded"}})
    )
    assert isinstance(got, PeerError)
    assert got.error.code == "overloaded"


def test_local_side_may_only_send_what_it_is_allowed() -> None:
    c: RpcSession[None] = RpcSession(local="client", peer="gateway", max_frame_bytes=4096)
    with pytest.raises(Forbidden):
        c.request(GATEWAY_INFO, GATEWAY_INFO.params(), deadline=1.0, waiter=None)


def test_notifications_are_typed() -> None:
    notifications = [m for m in METHODS.values() if m.is_notification]
    for method in notifications:
        caller = next(iter(method.callers))
        s: RpcSession[None] = RpcSession(local="x", peer=caller, max_frame_bytes=1 << 20)
        event = s.receive(frame(method=method.name, params={"bogus_field": 1}))
        assert isinstance(event, Rejected)
        assert event.reply is None
    assert all(isinstance(m.callers, frozenset) for m in METHODS.values())
    assert NotificationReceived  # exported for shells


def test_deep_nesting_and_bad_utf8_are_rejected_not_raised() -> None:
    from tether.protocol.session import Rejected, RpcSession

    s: RpcSession[object] = RpcSession(local="gateway", peer="admin", max_frame_bytes=1 << 20)
    deep = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"payload":' + b"[" * 1000
    deep += b"]" * 1000 + b"}}"
    bad = b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"payload":"\xff"}}'
    for frame, code in ((deep, "invalid_request"), (bad, "parse_error")):
        event = s.receive(frame)
        assert isinstance(event, Rejected)
        assert event.error.code == code
        assert event.reply is not None


def test_an_oversize_answer_fails_its_call_at_once() -> None:
    from tether.protocol.methods import PING
    from tether.protocol.session import ErrorReceived, RpcSession
    from tether.protocol.system import PingParams

    s: RpcSession[object] = RpcSession(local="admin", peer="gateway", max_frame_bytes=100)
    call, _frame = s.request(PING, PingParams(), deadline=1e9, waiter=object())
    big = b'{"jsonrpc":"2.0","id":%d,"result":{"payload":"%s"}}' % (call.id, b"x" * 200)
    event = s.receive(big)
    assert isinstance(event, ErrorReceived)
    assert event.call is call
    assert event.error.code == "too_large"
