"""``RpcSession``: the whole JSON-RPC conversation of one connection, without I/O.

Frames go in through :meth:`RpcSession.receive`, which returns one event saying what the
frame was (a typed request to handle, a response for a pending call, or a rejection with
the error frame to send back). Outgoing frames come out of :meth:`request`,
:meth:`notification`, :meth:`result` and :meth:`error` as bytes for the shell to write.

The session enforces, in this order: frame size and JSON-RPC shape, the method table
(-32601 for unknown methods), the handshake (``hello`` first and only once), the
caller's role (``forbidden``) and the params schema (-32602 naming the field).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from tether.errors import (
    Forbidden,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    ProtocolError,
    TetherError,
    TooLarge,
)
from tether.protocol.codes import error_from_wire
from tether.protocol.frame import (
    NotificationFrame,
    RequestFrame,
    ResultFrame,
    decode_frame,
    encode,
    encode_error,
)
from tether.protocol.methods import HELLO, METHODS, Method
from tether.protocol.pending import PendingCall, PendingCalls

__all__ = [
    "ErrorReceived",
    "Event",
    "Ignored",
    "NotificationReceived",
    "PeerError",
    "Rejected",
    "RequestReceived",
    "ResponseReceived",
    "RpcSession",
    "params_error",
]

W = TypeVar("W")
RequestId = int | str


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A valid request: call the handler, then send :meth:`RpcSession.result`."""

    id: RequestId
    method: Method[Any, Any]
    params: Any


@dataclass(frozen=True, slots=True)
class NotificationReceived:
    method: Method[Any, Any]
    params: Any


@dataclass(frozen=True, slots=True)
class ResponseReceived(Generic[W]):
    call: PendingCall[W]
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorReceived(Generic[W]):
    call: PendingCall[W]
    error: TetherError


@dataclass(frozen=True, slots=True)
class PeerError:
    """An error frame with a null id: the peer refused something it could not attribute."""

    error: TetherError


@dataclass(frozen=True, slots=True)
class Rejected:
    """An incoming frame was refused. Send ``reply`` when it is not None."""

    error: TetherError
    method: str | None
    reply: bytes | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing to do (e.g. a response that arrived after its call timed out)."""

    reason: str


Event = (
    RequestReceived
    | NotificationReceived
    | ResponseReceived[Any]
    | ErrorReceived[Any]
    | PeerError
    | Rejected
    | Ignored
)

_AT = re.compile(r" - at `\$\.?([^`]*)`")
_RESPONSE_HEAD = re.compile(
    rb'\A\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(\d{1,18})\s*,\s*"(?:result|error)"'
)


def _response_id(data: bytes | str) -> int | None:
    """The id of a response frame, read from its first bytes only (for frames too large
    to decode); None when the frame does not start like one of ours."""
    head = data[:128]
    m = _RESPONSE_HEAD.match(head.encode() if isinstance(head, str) else head)
    return int(m.group(1)) if m else None


_UNKNOWN = re.compile(r"unknown field (\S+)$")


def params_error(exc: msgspec.ValidationError, what: str = "params") -> InvalidParams:
    """Turn a msgspec validation error into ``invalid_params`` naming the field."""
    text = str(exc)
    m = _AT.search(text)
    field = m.group(1) if m else ""
    reason = (text[: m.start()] if m else text).replace("`", "")
    unknown = _UNKNOWN.search(reason)
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
    where = f"{what}.{field}" if field else what
    return InvalidParams(f"invalid {where}: {reason}", data={"field": where})


class RpcSession(Generic[W]):
    """One side of a connection.

    ``local`` is who this side is when it sends (``gateway``, or the role it holds);
    ``peer`` is who the other side is (``gateway``, or ``None`` until ``hello`` is done
    on a gateway-side session).
    """

    def __init__(
        self,
        *,
        local: str,
        peer: str | None,
        max_frame_bytes: int,
        methods: Mapping[str, Method[Any, Any]] = METHODS,
    ) -> None:
        self.local = local
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self.methods = methods
        self.pending: PendingCalls[W] = PendingCalls()
        self._ids = itertools.count(1)

    @property
    def established(self) -> bool:
        return self.peer is not None

    def establish(self, peer: str) -> None:
        """Record the peer's role once ``hello`` succeeded."""
        self.peer = peer

    # ---- incoming -------------------------------------------------------------------

    def receive(self, data: bytes | str) -> Event:
        """Interpret one incoming frame."""
        try:
            frame = decode_frame(data, self.max_frame_bytes)
        except TooLarge as exc:
            # an oversized answer to one of our calls fails that call now (not at its
            # deadline, and not as a lost connection that would be retried)
            answered = _response_id(data)
            call = self._pop(answered) if answered is not None else None
            if call is not None:
                return ErrorReceived(
                    call,
                    TooLarge(
                        f"the answer to {call.method.name!r} exceeds the frame limit of "
                        f"{self.max_frame_bytes} bytes",
                        data=dict(exc.data),
                    ),
                )
            return Rejected(exc, None, encode_error(None, exc))
        except ProtocolError as exc:
            return Rejected(exc, None, encode_error(None, exc))
        if isinstance(frame, RequestFrame):
            return self._request(frame)
        if isinstance(frame, NotificationFrame):
            return self._notification(frame)
        if isinstance(frame, ResultFrame):
            call = self._pop(frame.id)
            if call is None:
                return Ignored(f"response to unknown or expired call {frame.id!r}")
            decoder = call.method.result_decoder
            assert decoder is not None
            try:
                return ResponseReceived(call, decoder.decode(frame.result))
            except msgspec.ValidationError as exc:
                return ErrorReceived(call, params_error(exc, f"{call.method.name} result"))
            except msgspec.DecodeError as exc:
                return ErrorReceived(call, ParseError(f"result is not valid JSON: {exc}"))
            except RecursionError:
                return ErrorReceived(call, InvalidRequest("result is nested too deeply"))
        error = error_from_wire(frame.error.message, frame.error.data)
        if frame.id is None:
            return PeerError(error)
        call = self._pop(frame.id)
        if call is None:
            return Ignored(f"error for unknown or expired call {frame.id!r}")
        return ErrorReceived(call, error)

    def _pop(self, request_id: RequestId) -> PendingCall[W] | None:
        return self.pending.pop(request_id) if isinstance(request_id, int) else None

    def _check(self, name: str) -> Method[Any, Any]:
        method = self.methods.get(name)
        if method is None:
            raise MethodNotFound(f"method {name!r} does not exist", data={"method": name})
        if self.peer is None:
            if method is not HELLO:
                raise InvalidRequest("the first request on a connection must be 'hello'")
            return method
        if method is HELLO:
            raise InvalidRequest("'hello' was already done on this connection")
        if self.peer not in method.callers:
            raise Forbidden(
                f"role {self.peer!r} may not call {name!r}",
                data={"method": name, "role": self.peer},
            )
        return method

    def _decode_params(self, method: Method[Any, Any], raw: Any) -> Any:
        try:
            return method.params_decoder.decode(b"{}" if raw is None else raw)
        except msgspec.ValidationError as exc:
            raise params_error(exc) from exc
        except msgspec.DecodeError as exc:  # e.g. invalid UTF-8 inside a string
            raise ParseError(f"params are not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise InvalidRequest("params are nested too deeply") from exc

    def _request(self, frame: RequestFrame) -> Event:
        try:
            method = self._check(frame.method)
            if method.is_notification:
                raise InvalidRequest(f"{frame.method!r} is a notification: send it without an id")
            params = self._decode_params(method, frame.params)
        except TetherError as exc:
            return Rejected(exc, frame.method, encode_error(frame.id, exc))
        return RequestReceived(frame.id, method, params)

    def _notification(self, frame: NotificationFrame) -> Event:
        try:
            method = self._check(frame.method)
            if not method.is_notification:
                raise InvalidRequest(f"{frame.method!r} is a request: it needs an id")
            params = self._decode_params(method, frame.params)
        except TetherError as exc:
            return Rejected(exc, frame.method, None)
        return NotificationReceived(method, params)

    # ---- outgoing -------------------------------------------------------------------

    def _check_outgoing(self, method: Method[Any, Any]) -> None:
        if self.local not in method.callers:
            raise Forbidden(f"{self.local!r} may not send {method.name!r}")

    def request(
        self, method: Method[Any, Any], params: Any, *, deadline: float, waiter: W
    ) -> tuple[PendingCall[W], bytes]:
        """Register a pending call and return it with the frame to send."""
        self._check_outgoing(method)
        if method.is_notification:
            raise InvalidRequest(f"{method.name!r} is a notification")
        call = PendingCall(next(self._ids), method, deadline, waiter)
        self.pending.add(call)
        return call, encode(RequestFrame(id=call.id, method=method.name, params=params))

    def notification(self, method: Method[Any, Any], params: Any) -> bytes:
        self._check_outgoing(method)
        if not method.is_notification:
            raise InvalidRequest(f"{method.name!r} is a request, not a notification")
        return encode(NotificationFrame(method=method.name, params=params))

    def result(self, request_id: RequestId, result: Any) -> bytes:
        return encode(ResultFrame(id=request_id, result=result))

    def error(self, request_id: RequestId | None, exc: TetherError) -> bytes:
        return encode_error(request_id, exc)
