"""Running one subprocess safely: own process group, deadline, output cap, streaming.

:func:`run_process` starts the command in a new session (so it has no controlling
terminal and its process group id is its pid), streams stdout and stderr to a callback
as they arrive, keeps the first ``output_cap`` bytes of the chosen streams in arrival
order, and keeps reading past the cap so the child never blocks on a full pipe.

However it ends (normal exit, deadline, ``stop``, cancellation of the awaiting task),
the whole process group is killed before :func:`run_process` returns or raises:
``SIGTERM``, then ``SIGKILL`` once the grace period is over. Background jobs left behind
by a command that already exited are killed too, and so are descendants that left the
group (``setsid``, double forks) when the runner is a subreaper (:mod:`tether.runner.reaper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ToolFailed
from tether.runner import reaper

__all__ = ["KILL_GRACE", "OnOutput", "ProcessResult", "kill_group", "run_process"]

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL."""
DRAIN_TIMEOUT = 1.0
"""Seconds to wait for pipes to reach end of file once the group is dead."""
REAP_TIMEOUT = 5.0
EXIT_POLL = 0.05
CHUNK = 64 * 1024

OnOutput = Callable[[str, bytes], None]
"""Called with ``(stream, data)`` for every chunk read, ``stream`` being stdout or stderr."""


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended and what it printed."""

    exit_code: int | None
    """Exit status; negative for a signal; None if it could not be reaped."""
    output: bytes
    """The first ``output_cap`` bytes of the captured streams, in arrival order."""
    dropped: int
    """Captured bytes read past the cap and discarded."""
    duration: float
    timed_out: bool = False
    stopped: bool = False
    """The ``stop`` event ended the process."""

    @property
    def truncated(self) -> bool:
        return self.dropped > 0


class _Sink:
    def __init__(self, cap: int, capture: Collection[str], on_output: OnOutput | None) -> None:
        self.cap = cap
        self.capture = capture
        self.on_output = on_output
        self.buffer = bytearray()
        self.dropped = 0

    def feed(self, stream: str, data: bytes) -> None:
        if stream in self.capture:
            room = max(0, self.cap - len(self.buffer))
            self.buffer += data[:room]
            self.dropped += max(0, len(data) - room)
        if self.on_output is not None:
            self.on_output(stream, data)

    async def pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        while chunk := await reader.read(CHUNK):
            self.feed(stream, chunk)


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` is running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True  # no procfs: only kill(2) can tell, and it counts zombies
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, wait up to ``grace`` for it to go, then SIGKILL it."""
    try:
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        # No event tells when a process group is empty, so poll.
        while loop.time() < end and _group_alive(pgid):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Return once ``proc`` has exited.

    ``Process.wait()`` also waits for the pipes to close, which never happens while a
    background job holds them, so the return code is polled as well.
    """
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while not waiter.done() and proc.returncode is None:
            await asyncio.wait([waiter], timeout=EXIT_POLL)
    finally:
        waiter.cancel()


async def _wait_for(
    proc: asyncio.subprocess.Process, timeout: float, events: Sequence[asyncio.Event]
) -> tuple[bool, bool]:
    """Wait for exit, deadline or an event; return (timed_out, stopped)."""
    exited = asyncio.ensure_future(_exited(proc))
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(
            [exited, *waiters], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (exited, *waiters):
            task.cancel()
    if exited in done:
        return False, False
    return not done, bool(done)


async def _cleanup(
    proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]], grace: float
) -> None:
    try:
        await kill_group(proc.pid, grace)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_exited(proc), REAP_TIMEOUT)
        await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
    finally:
        for task in readers:
            task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    timeout: float,
    output_cap: int,
    on_output: OnOutput | None = None,
    capture: Collection[str] = ("stdout", "stderr"),
    stop: asyncio.Event | None = None,
    kill_grace: float = KILL_GRACE,
    call_id: str | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` to completion, deadline or ``stop``; always kill its process group.

    ``capture`` names the streams kept in :attr:`ProcessResult.output`; ``on_output``
    sees every chunk of both streams. A deadline is reported as ``timed_out``, not
    raised. Cancellation kills the group, then propagates. An exception raised by
    ``on_output`` stops the process and is re-raised. ``call_id`` tags the command's
    environment so its orphans can be found and killed; ``pass_fds`` are inherited.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    full_env = dict(env)
    if call_id is not None:
        full_env[reaper.CALL_ENV] = call_id
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise ToolFailed(
            f"cannot start {argv[0]!r}: {exc.strerror or exc}",
            data={"reason": "spawn_failed", "argv0": argv[0]},
        ) from exc
    assert proc.stdout is not None
    assert proc.stderr is not None
    sink = _Sink(output_cap, capture, on_output)
    broken = asyncio.Event()
    readers = [
        asyncio.create_task(sink.pump(proc.stdout, "stdout")),
        asyncio.create_task(sink.pump(proc.stderr, "stderr")),
    ]

    def on_reader_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            broken.set()

    for task in readers:
        task.add_done_callback(on_reader_done)
    events = [broken] if stop is None else [broken, stop]
    with reaper.spawned(proc.pid):
        try:
            timed_out, stopped = await _wait_for(proc, timeout, events)
        finally:
            await _cleanup(proc, readers, kill_grace)
            if reaper.active():
                await asyncio.shield(asyncio.to_thread(reaper.kill_orphans, call_id or ""))
    for task in readers:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return ProcessResult(
        exit_code=proc.returncode,
        output=bytes(sink.buffer),
        dropped=sink.dropped,
        duration=loop.time() - started,
        timed_out=timed_out,
        stopped=stopped,
    )
