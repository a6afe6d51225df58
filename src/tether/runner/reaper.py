"""Every descendant of a command dies with its call, even one that left its process group.

:mod:`tether.runner.process` kills a command's process group when its call ends; a
descendant that called ``setsid`` or double-forked is no longer in it. Inside the
sandbox the pid namespace takes those down with the command. Without it
(``sandbox = off``) the runner makes itself a *child subreaper* (Linux
``PR_SET_CHILD_SUBREAPER``): orphaned descendants are re-parented to the runner instead
of init, so they show up among its own children, and :func:`kill_orphans` stops and
kills each with its whole subtree, then reaps it.

Commands carry ``TETHER_CALL_ID`` in their environment, so an orphan is killed when the
call that made it ends; one that cleared its environment is killed when any call ends.
Processes the runner started itself are registered with :func:`spawned` and never
taken for orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

__all__ = ["CALL_ENV", "active", "become_subreaper", "kill_orphans", "spawned"]

log = logging.getLogger(__name__)

CALL_ENV = "TETHER_CALL_ID"
_PR_SET_CHILD_SUBREAPER = 36
_ROUNDS = 20
"""Passes of stop-and-collect before the kill (a process may fork while being stopped)."""
_REAP_WAIT = 2.0
_own: set[int] = set()
_subreaper = False


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux); False where that is not possible."""
    global _subreaper
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("! cannot become a child subreaper", extra={"errno": ctypes.get_errno()})
        return False
    _subreaper = True
    return True


def active() -> bool:
    """True once :func:`become_subreaper` succeeded."""
    return _subreaper


@contextlib.contextmanager
def spawned(pid: int) -> Iterator[None]:
    """Mark ``pid`` as started by the runner itself while the block runs."""
    _own.add(pid)
    try:
        yield
    finally:
        _own.discard(pid)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list, else a /proc scan)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            return _scan_children(pid)
        except OSError:
            continue
    return out


def _scan_children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _stat(int(name))[1] == pid:
            out.append(int(name))
    return out


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of ``pid``; ("", 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return "", 0
    return fields[0].decode(), int(fields[1])


def _tag(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return None
    prefix = CALL_ENV.encode() + b"="
    for item in environ:
        if item.startswith(prefix):
            return item[len(prefix) :].decode("utf-8", "replace")
    return None


def _orphans(call_id: str) -> list[int]:
    me = os.getpid()
    found = []
    for pid in _children(me):
        if pid in _own:
            continue
        tag = _tag(pid)
        if tag is None or tag == call_id or _stat(pid)[0] == "Z":
            found.append(pid)
    return found


def _subtree(top: list[int]) -> list[int]:
    seen: list[int] = []
    todo = list(top)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(victims: set[int]) -> None:
    """Wait (bounded) for the killed processes that are, or became, our children."""
    me = os.getpid()
    end = time.monotonic() + _REAP_WAIT
    while time.monotonic() < end:
        pending = victims.intersection(_children(me))
        if not pending:
            return
        for pid in pending:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.005)


def kill_orphans(call_id: str) -> int:
    """Stop, kill and reap the orphans of ``call_id`` (and untagged ones); return how many.

    Blocking (it waits up to two seconds for the dead to be reaped): call it in a thread."""
    if not _subreaper:
        return 0
    victims: set[int] = set()
    for _ in range(_ROUNDS):
        tree = [p for p in _subtree(_orphans(call_id)) if p not in victims]
        if not tree:
            break
        _signal(tree, signal.SIGSTOP)  # stopped processes cannot fork while we look
        victims.update(tree)
    if not victims:
        return 0
    _signal(sorted(victims), signal.SIGKILL)
    _reap(victims)
    log.info(
        "killed orphaned processes of a call", extra={"call_id": call_id, "count": len(victims)}
    )
    return len(victims)
