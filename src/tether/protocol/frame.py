"""JSON-RPC 2.0 frames: strict decoding of one message, encoding of the four kinds.

A frame is one JSON object (batches are refused). Decoding keeps ``params`` and
``result`` as :class:`msgspec.Raw` so the method table decides their type later, and so
a relay can pass them on without decoding. Every failure is a
:class:`~tether.errors.ProtocolError` subclass or :class:`~tether.errors.TooLarge`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from tether.errors import InvalidRequest, ParseError, TetherError, TooLarge
from tether.protocol.codes import numeric_code

__all__ = [
    "ErrorFrame",
    "ErrorObject",
    "Frame",
    "NotificationFrame",
    "RequestFrame",
    "ResultFrame",
    "decode_frame",
    "encode",
    "encode_error",
]

RequestId = int | str


class ErrorObject(msgspec.Struct, forbid_unknown_fields=True):
    code: int
    message: str
    data: dict[str, Any] | None = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    jsonrpc: str
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: msgspec.Raw | UnsetType = UNSET
    result: msgspec.Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET


class RequestFrame(msgspec.Struct, kw_only=True):
    """``params`` is :class:`msgspec.Raw` when decoded, a Struct when built to send."""

    jsonrpc: str = "2.0"
    id: RequestId
    method: str
    params: Any


class NotificationFrame(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    method: str
    params: Any


class ResultFrame(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId
    result: Any


class ErrorFrame(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId | None
    error: ErrorObject


Frame = RequestFrame | NotificationFrame | ResultFrame | ErrorFrame

_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()


def _too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"frame of {size} bytes exceeds the limit of {limit}", data={"limit": limit})


def decode_frame(data: bytes | str, max_bytes: int) -> Frame:
    """Decode one frame strictly; raise a protocol error naming what is wrong."""
    size = len(data)
    if size > max_bytes:
        raise _too_large(size if isinstance(data, bytes) else len(data.encode()), max_bytes)
    if isinstance(data, str) and size * 4 > max_bytes:
        encoded = len(data.encode())
        if encoded > max_bytes:
            raise _too_large(encoded, max_bytes)
    try:
        env = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        if data.lstrip()[:1] in ("[", b"["):
            raise InvalidRequest(
                "batch requests are not supported; send one object per frame"
            ) from exc
        raise InvalidRequest(f"not a JSON-RPC 2.0 message: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ParseError(f"frame is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("frame is nested too deeply") from exc
    if env.jsonrpc != "2.0":
        raise InvalidRequest('"jsonrpc" must be "2.0"')
    params = None if env.params is UNSET else env.params
    if env.method is not UNSET:
        if env.result is not UNSET or env.error is not UNSET:
            raise InvalidRequest("a request cannot carry result or error")
        if env.id is UNSET:
            return NotificationFrame(method=env.method, params=params)
        if env.id is None or env.id == "":
            raise InvalidRequest("request id must be a non-empty string or an integer")
        return RequestFrame(id=env.id, method=env.method, params=params)
    if env.id is UNSET:
        raise InvalidRequest("a response needs an id")
    if env.error is not UNSET:
        if env.result is not UNSET:
            raise InvalidRequest("a response cannot carry both result and error")
        return ErrorFrame(id=env.id, error=env.error)
    if env.result is UNSET or env.id is None:
        raise InvalidRequest("a message needs a method, a result or an error")
    return ResultFrame(id=env.id, result=env.result)


def encode(obj: Any) -> bytes:
    """Encode a frame (or any msgspec-encodable value) as compact JSON."""
    return _encoder.encode(obj)


def encode_error(request_id: RequestId | None, exc: TetherError) -> bytes:
    """Encode an error response carrying the stable code in ``data.code``."""
    data: dict[str, Any] = {"code": exc.code, **exc.data}
    return _encoder.encode(
        ErrorFrame(
            id=request_id,
            error=ErrorObject(code=numeric_code(exc.code), message=exc.message, data=data),
        )
    )
