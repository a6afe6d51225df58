"""Frame decoding fed with strings: every error path of tether.protocol.frame."""

from __future__ import annotations

import json

import msgspec
import pytest

from tether.errors import InvalidRequest, ParseError, TooLarge
from tether.protocol.frame import (
    ErrorFrame,
    NotificationFrame,
    RequestFrame,
    ResultFrame,
    decode_frame,
    encode,
    encode_error,
)

LIMIT = 1024


def test_request_notification_result_error() -> None:
    req = decode_frame('{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":1}}', LIMIT)
    assert isinstance(req, RequestFrame)
    assert (req.id, req.method, bytes(req.params)) == (7, "ping", b'{"a":1}')
    note = decode_frame(b'{"jsonrpc":"2.0","method":"run.event"}', LIMIT)
    assert isinstance(note, NotificationFrame)
    assert note.params is None
    res = decode_frame('{"jsonrpc":"2.0","id":"x","result":[1,2]}', LIMIT)
    assert isinstance(res, ResultFrame)
    assert bytes(res.result) == b"[1,2]"
    err = decode_frame('{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m"}}', LIMIT)
    assert isinstance(err, ErrorFrame)
    assert err.id is None


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ("{", ParseError, "not valid JSON"),
        ("", ParseError, "not valid JSON"),
        ('{"jsonrpc":"2.0","id":1,"method":"p"} x', ParseError, "not valid JSON"),
        ("[]", InvalidRequest, "batch"),
        (' [{"jsonrpc":"2.0","id":1,"method":"p"}]', InvalidRequest, "batch"),
        ('"hello"', InvalidRequest, "not a JSON-RPC"),
        ('{"id":1,"method":"p"}', InvalidRequest, "not a JSON-RPC"),
        ('{"jsonrpc":"1.0","id":1,"method":"p"}', InvalidRequest, '"2.0"'),
        ('{"jsonrpc":"2.0","id":1,"method":"p","extra":1}', InvalidRequest, "unknown field"),
        ('{"jsonrpc":"2.0","id":null,"method":"p"}', InvalidRequest, "request id"),
        ('{"jsonrpc":"2.0","id":"","method":"p"}', InvalidRequest, "request id"),
        ('{"jsonrpc":"2.0","id":true,"method":"p"}', InvalidRequest, "not a JSON-RPC"),
        ('{"jsonrpc":"2.0","id":1.5,"method":"p"}', InvalidRequest, "not a JSON-RPC"),
        ('{"jsonrpc":"2.0","id":1,"method":"p","result":1}', InvalidRequest, "cannot carry"),
        ('{"jsonrpc":"2.0","result":1}', InvalidRequest, "needs an id"),
        ('{"jsonrpc":"2.0","id":1}', InvalidRequest, "needs a method"),
        ('{"jsonrpc":"2.0","id":null,"result":1}', InvalidRequest, "needs a method"),
        (
            '{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}',
            InvalidRequest,
            "both",
        ),
        (
            '{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}',
            InvalidRequest,
            "not a JSON-RPC",
        ),
    ],
)
def test_bad_frames(text: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        decode_frame(text, LIMIT)
    assert needle in str(info.value)


def test_size_limit_counts_bytes_not_characters() -> None:
    ok = json.dumps({"jsonrpc": "2.0", "method": "m", "params": {"t": "x" * 900}})
    assert decode_frame(ok, LIMIT)
    wide = json.dumps(
        {"jsonrpc": "2.0", "method": "m", "params": {"t": "界" * 400}}, ensure_ascii=False
    )
    assert len(wide) < LIMIT < len(wide.encode())
    with pytest.raises(TooLarge) as info:
        decode_frame(wide, LIMIT)
    assert info.value.data == {"limit": LIMIT}
    with pytest.raises(TooLarge):
        decode_frame(b"x" * (LIMIT + 1), LIMIT)


def test_encode_error_carries_stable_code() -> None:
    data = msgspec.json.decode(encode_error(3, TooLarge("big", data={"limit": 9})))
    assert data == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": -32005, "message": "big", "data": {"code": "too_large", "limit": 9}},
    }


def test_encode_round_trip() -> None:
    frame = RequestFrame(id=1, method="ping", params={"payload": "x"})
    again = decode_frame(encode(frame), LIMIT)
    assert isinstance(again, RequestFrame)
    assert again.method == "ping"
