"""The wire protocol, sans I/O: frames, the method table, error codes, the handshake.

Nothing here imports asyncio, sockets, web or database code; the I/O shells in
``tether.transport`` feed bytes to :class:`RpcSession` and write what it returns.
"""

from tether.protocol.codes import CODES, error_from_wire, numeric_code
from tether.protocol.frame import decode_frame, encode, encode_error
from tether.protocol.handshake import PROTOCOL_VERSIONS, HelloParams, HelloResult, negotiate
from tether.protocol.methods import METHODS, Method
from tether.protocol.pending import PendingCall, PendingCalls
from tether.protocol.session import (
    ErrorReceived,
    Event,
    Ignored,
    NotificationReceived,
    PeerError,
    Rejected,
    RequestReceived,
    ResponseReceived,
    RpcSession,
)

__all__ = [
    "CODES",
    "METHODS",
    "PROTOCOL_VERSIONS",
    "ErrorReceived",
    "Event",
    "HelloParams",
    "HelloResult",
    "Ignored",
    "Method",
    "NotificationReceived",
    "PeerError",
    "PendingCall",
    "PendingCalls",
    "Rejected",
    "RequestReceived",
    "ResponseReceived",
    "RpcSession",
    "decode_frame",
    "encode",
    "encode_error",
    "error_from_wire",
    "negotiate",
    "numeric_code",
]
