"""The one error tree of tether.

Every error tether raises on purpose is a :class:`TetherError`. Each class carries the
stable string ``code`` that travels on the wire in ``error.data.code`` (see
``tether.protocol.codes`` for the numeric JSON-RPC code of each) and says whether
retrying the same operation can help::

    TetherError
    ├── ConfigError            bad config file, env var or flag (CLI exits 2); not retryable
    ├── ProtocolError          a peer broke the wire protocol; not retryable
    │   ├── ParseError             frame is not JSON                      parse_error
    │   ├── InvalidRequest         not a JSON-RPC 2.0 object, batch, …    invalid_request
    │   ├── MethodNotFound         method not in the table                method_not_found
    │   └── UnsupportedVersion     no protocol version in common          unsupported_version
    ├── InvalidParams          params fail their schema                   invalid_params
    ├── Unauthorized           no or wrong credential                     unauthorized
    ├── Forbidden              role may not do this                       forbidden
    ├── NotFound               no such run, runner, …                     not_found
    ├── Conflict               a compare-and-set lost, illegal transition conflict
    │   └── GatewayRunning         another gateway serves this runtime dir
    ├── TooLarge               frame or payload over a limit              too_large
    ├── RateLimited            slow down (retryable)                      rate_limited
    ├── Overloaded             a capacity limit is reached (retryable)    overloaded
    ├── RunnerOffline          the runner is not connected (retryable)    runner_offline
    ├── CapabilityDenied       capability token rejected by the runner    capability_denied
    ├── PolicyDenied           a policy rule forbids it                   policy_denied
    ├── ApprovalDenied         a person said no (or the run was cancelled) approval_denied
    ├── ApprovalExpired        nobody decided before the request expired  approval_expired
    ├── QuestionExpired        nobody answered a question in time         question_expired
    ├── AgentNotInstalled      the agent's program is not on the runner   agent_not_installed
    ├── AgentCrashed           the agent's process died mid-turn          agent_crashed
    ├── DeliveryFailed         a chat message was given up                delivery_failed
    ├── ToolTimeout            a tool ran past its deadline               tool_timeout
    ├── ToolFailed             a tool could not do its work               tool_failed
    ├── RequestTimeout         a peer did not answer an RPC in time       timeout
    ├── ConnectionClosed       the connection ended; pending calls fail   connection_closed
    └── InternalError          a bug; details are logged, not sent        internal

Errors received from a peer are re-raised on the caller's side as the same class
(``error_class_for(code)``), so ``except Forbidden`` works across the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AgentCrashed",
    "AgentNotInstalled",
    "ApprovalDenied",
    "ApprovalExpired",
    "CapabilityDenied",
    "ConfigError",
    "Conflict",
    "ConnectionClosed",
    "DeliveryFailed",
    "Forbidden",
    "GatewayRunning",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "NotFound",
    "Overloaded",
    "ParseError",
    "PolicyDenied",
    "ProtocolError",
    "QuestionExpired",
    "RateLimited",
    "RequestTimeout",
    "RunnerOffline",
    "TetherError",
    "TooLarge",
    "ToolFailed",
    "ToolTimeout",
    "Unauthorized",
    "UnsupportedVersion",
    "error_class_for",
]


class TetherError(Exception):
    """Base of every error tether raises on purpose.

    ``data`` holds extra machine-readable detail that may travel on the wire
    (never secrets).
    """

    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.data: dict[str, Any] = data or {}


class ConfigError(TetherError, ValueError):
    """Raised by ``tether.config`` for an invalid file, env var or flag; the CLI exits 2."""

    code = "invalid_config"


class ProtocolError(TetherError):
    """Raised by ``tether.protocol`` when a peer breaks the wire protocol."""

    code = "invalid_request"


class ParseError(ProtocolError):
    """The frame is not valid JSON."""

    code = "parse_error"


class InvalidRequest(ProtocolError):
    """The frame is JSON but not an acceptable JSON-RPC 2.0 message."""

    code = "invalid_request"


class MethodNotFound(ProtocolError):
    """The method is not in the method table (or not served in this direction)."""

    code = "method_not_found"


class UnsupportedVersion(ProtocolError):
    """``hello`` found no protocol version both sides speak."""

    code = "unsupported_version"


class InvalidParams(TetherError, ValueError):
    """Params (or a result) do not match their schema; ``data.field`` names the culprit."""

    code = "invalid_params"


class Unauthorized(TetherError):
    """Missing, unknown, expired or revoked credential."""

    code = "unauthorized"


class Forbidden(TetherError, PermissionError):
    """The authenticated role may not call this method or touch this object."""

    code = "forbidden"


class NotFound(TetherError, LookupError):
    """The named object does not exist."""

    code = "not_found"


class Conflict(TetherError):
    """A compare-and-set lost, a transition is illegal, or content differs at an existing key."""

    code = "conflict"


class GatewayRunning(Conflict):
    """Raised when a gateway starts where another one already serves the runtime directory."""

    def __init__(self, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"another gateway is running ({who})", data={"pid": pid})
        self.pid = pid


class TooLarge(TetherError):
    """A frame or payload exceeds a configured limit."""

    code = "too_large"


class RateLimited(TetherError):
    """Too many requests; retry after a pause."""

    code = "rate_limited"
    retryable = True


class Overloaded(TetherError):
    """A capacity limit (connections, in-flight calls, queue) is reached; retry later."""

    code = "overloaded"
    retryable = True


class RunnerOffline(TetherError):
    """The target runner has no live connection; retry when it is back."""

    code = "runner_offline"
    retryable = True


class CapabilityDenied(TetherError):
    """The runner rejected the capability token (signature, audience, expiry, replay, binding)."""

    code = "capability_denied"


class PolicyDenied(TetherError):
    """A policy rule (gateway or runner-local) forbids the operation."""

    code = "policy_denied"


class ApprovalDenied(TetherError):
    """A person denied the call, or its run was cancelled while it waited."""

    code = "approval_denied"


class ApprovalExpired(TetherError):
    """Nobody permitted decided the request before it expired."""

    code = "approval_expired"


class QuestionExpired(TetherError):
    """Nobody permitted answered the question before it expired."""

    code = "question_expired"


class AgentNotInstalled(TetherError):
    """The runner was asked to start an agent whose program it does not have."""

    code = "agent_not_installed"


class AgentCrashed(TetherError):
    """A hosted agent's process died during a turn; the next turn starts it again."""

    code = "agent_crashed"
    retryable = True


class DeliveryFailed(TetherError):
    """A message for a chat was given up (a permanent refusal, or out of attempts)."""

    code = "delivery_failed"


class ToolTimeout(TetherError):
    """A tool ran past its deadline and was stopped."""

    code = "tool_timeout"


class ToolFailed(TetherError):
    """A tool could not do its work (bad input, missing file, non-unique edit, …)."""

    code = "tool_failed"


class RequestTimeout(TetherError, TimeoutError):
    """A peer did not answer an RPC before its deadline."""

    code = "timeout"
    retryable = True


class ConnectionClosed(TetherError, ConnectionError):
    """The connection closed; calls still pending on it fail with this."""

    code = "connection_closed"
    retryable = True


class InternalError(TetherError):
    """A bug. The peer sees only a generic message; details go to the log."""

    code = "internal"


_BY_CODE: dict[str, type[TetherError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        UnsupportedVersion,
        InvalidParams,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        RateLimited,
        Overloaded,
        QuestionExpired,
        AgentNotInstalled,
        AgentCrashed,
        DeliveryFailed,
        RunnerOffline,
        CapabilityDenied,
        PolicyDenied,
        ApprovalDenied,
        ApprovalExpired,
        ToolTimeout,
        ToolFailed,
        RequestTimeout,
        ConnectionClosed,
        ConfigError,
        InternalError,
    )
}


def error_class_for(code: str) -> type[TetherError]:
    """Return the error class for a wire code; unknown codes map to :class:`InternalError`."""
    return _BY_CODE.get(code, InternalError)
