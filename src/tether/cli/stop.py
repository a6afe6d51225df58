"""Stopping a foreground command (``tether up``, ``tether runner``) with SIGINT or SIGTERM.

The first signal asks the command to stop; every later one only says that the stop is
under way. The handlers stay installed until the command is done, and then the signals
are ignored until the process exits, so a second Ctrl-C can never interrupt a shutdown
half-way (no ``KeyboardInterrupt`` inside a database pool, no traceback) and the exit
status is the same however many signals arrived.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["StopSignals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Process-wide SIGINT/SIGTERM handling for one foreground command."""

    def __init__(self, note: str = "still stopping; please wait") -> None:
        self.note = note
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_stop: Callable[[], object] | None = None

    @property
    def requested(self) -> bool:
        """A signal came: the command should stop (checked, so no wake-up can be lost)."""
        return self.received > 0

    def install(self) -> StopSignals:
        """Take over SIGINT and SIGTERM for the rest of the process."""
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def bind(self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[], object]) -> None:
        """Call ``on_stop`` in ``loop`` at the first signal (at once if one came already)."""
        self._loop, self._on_stop = loop, on_stop
        if self.received:
            loop.call_soon_threadsafe(on_stop)

    def unbind(self) -> None:
        """The loop is closing: later signals only print the note."""
        self._loop = self._on_stop = None

    def block(self) -> None:
        """The command is done: a signal from now on is ignored, so it cannot kill the
        interpreter while it exits and change the exit status. (Blocking it is not
        enough: a blocked signal is delivered to any other thread still alive, such as
        a database driver's, once the interpreter has restored the default handlers.
        An ignored one is dropped in every thread, and Python leaves it ignored.)"""
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of whatever the main thread does:
        # it only schedules work on the loop and writes with os.write (never sys.stderr,
        # whose buffer the interrupted code may be holding).
        self.received += 1
        if self.received == 1:
            loop, on_stop = self._loop, self._on_stop
            if loop is not None and on_stop is not None and not loop.is_closed():
                # closed in the meantime: nothing is left to stop
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(on_stop)
            return
        with contextlib.suppress(OSError):
            os.write(2, f"{signal.Signals(signum).name}: {self.note}\n".encode())
