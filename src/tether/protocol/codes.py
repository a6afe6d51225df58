"""The one table of wire error codes.

Each stable string in ``error.data.code`` has exactly one JSON-RPC numeric code. The
standard codes (-32700 … -32603) keep their JSON-RPC meaning; tether's own codes live in
-32000 … -32099. Clients branch on the string, never on the message.
"""

from __future__ import annotations

from typing import Final

from tether.errors import TetherError, error_class_for

__all__ = ["CODES", "error_from_wire", "numeric_code"]

CODES: Final[dict[str, int]] = {
    "parse_error": -32700,
    "invalid_request": -32600,
    "method_not_found": -32601,
    "invalid_params": -32602,
    "internal": -32603,
    "unauthorized": -32001,
    "forbidden": -32002,
    "not_found": -32003,
    "conflict": -32004,
    "too_large": -32005,
    "rate_limited": -32006,
    "overloaded": -32007,
    "runner_offline": -32008,
    "capability_denied": -32009,
    "policy_denied": -32010,
    "approval_denied": -32011,
    "tool_timeout": -32012,
    "tool_failed": -32013,
    "unsupported_version": -32014,
    "timeout": -32015,
    "connection_closed": -32016,
    "invalid_config": -32017,
    "approval_expired": -32018,
    "question_expired": -32019,
    "agent_not_installed": -32020,
    "agent_crashed": -32021,
    "delivery_failed": -32022,
}


def numeric_code(code: str) -> int:
    """The JSON-RPC numeric code for a stable string (unknown strings are internal)."""
    return CODES.get(code, CODES["internal"])


def error_from_wire(message: str, data: dict[str, object] | None) -> TetherError:
    """Rebuild the local exception for an error received from a peer."""
    data = dict(data or {})
    code = str(data.pop("code", "internal"))
    return error_class_for(code)(message, data=data)
