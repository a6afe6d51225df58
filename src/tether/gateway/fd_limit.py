"""Fit the connection caps to the open-file limit, raising the soft limit first.

A login session gives a process a soft limit of 1,024 descriptors, far below what the
default caps allow (20,000 WebSocket connections). At start the gateway raises its soft
limit toward the hard one as far as the config needs; if the hard limit is lower, it
lowers the caps to fit (and says so) rather than refusing to start or failing later
with ``EMFILE`` while accepting.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

import msgspec

from tether.config import Limits

__all__ = ["RESERVED_FDS", "TCP_EXTRA", "FdPlan", "fit_fd_limit", "log_plan", "plan"]

RESERVED_FDS = 128
"""Descriptors kept for everything but connections: ledger pools and their SQLite files,
listening sockets, the event loop, key and log files."""
TCP_EXTRA = 64
"""TCP connections beyond WebSocket and pending ones: plain HTTP requests being served."""


@dataclass(frozen=True, slots=True)
class FdPlan:
    limits: Limits
    needed: int
    soft_before: int
    soft: int
    hard: int
    lowered: bool

    @property
    def max_tcp(self) -> int:
        """Open TCP connections of the HTTP listener, any state."""
        return self.limits.max_ws_connections + self.limits.max_pending_connections + TCP_EXTRA


def _needed(limits: Limits) -> int:
    return (
        limits.max_ws_connections
        + limits.max_pending_connections
        + TCP_EXTRA
        + limits.max_ipc_connections
        + RESERVED_FDS
    )


def plan(limits: Limits, soft_before: int, hard: int, soft: int) -> FdPlan:
    """Caps that fit ``soft`` descriptors (pure: the decision, apart from the syscall)."""
    needed = _needed(limits)
    if soft >= needed:
        return FdPlan(limits, needed, soft_before, soft, hard, lowered=False)
    budget = max(0, soft - RESERVED_FDS - TCP_EXTRA)
    ipc = max(4, min(limits.max_ipc_connections, budget // 8))
    pending = max(8, min(limits.max_pending_connections, (budget - ipc) // 4))
    ws = max(8, min(limits.max_ws_connections, budget - ipc - pending))
    fitted = msgspec.structs.replace(
        limits, max_ws_connections=ws, max_pending_connections=pending, max_ipc_connections=ipc
    )
    return FdPlan(fitted, needed, soft_before, soft, hard, lowered=True)


def fit_fd_limit(limits: Limits) -> FdPlan:
    """Raise the soft ``RLIMIT_NOFILE`` as far as ``limits`` need (up to the hard limit),
    then return caps that fit what was granted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = _needed(limits)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    granted = soft
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            granted = target
        except (ValueError, OSError):
            granted = soft
    return plan(limits, soft, hard, granted)


def log_plan(fitted: FdPlan, log: logging.Logger) -> None:
    """Say what was raised, and loudly what was lowered."""
    if fitted.soft > fitted.soft_before:
        log.info(
            "raised the open-file limit",
            extra={"from": fitted.soft_before, "to": fitted.soft, "hard": fitted.hard},
        )
    if fitted.lowered:
        log.warning(
            "! the open-file limit is below what the config needs; serving fewer "
            "connections so the gateway cannot run out of descriptors",
            extra={
                "open_files": fitted.soft,
                "hard_limit": fitted.hard,
                "needed": fitted.needed,
                "max_ws_connections": fitted.limits.max_ws_connections,
                "max_pending_connections": fitted.limits.max_pending_connections,
                "max_ipc_connections": fitted.limits.max_ipc_connections,
            },
        )
