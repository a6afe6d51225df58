"""A hosted turn's events, kept until the gateway has committed them.

Events are numbered 1, 2, … and kept in memory up to ``memory_bytes``; past that the
oldest kept ones move to a spool file (under the runner's data dir) up to
``disk_bytes``. :meth:`TurnJournal.add` returns False once the spool is full: the host
then interrupts the turn and says so. :meth:`after` yields what the gateway lacks (from
disk first, in order); :meth:`ack` forgets what it has, and the spool file is emptied
once nothing on it is needed.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TurnJournal"]


@dataclass(slots=True)
class _OnDisk:
    n: int
    offset: int
    size: int


class TurnJournal:
    """See the module docstring. Entries are opaque bytes (the encoded event)."""

    def __init__(self, spool: Path, *, memory_bytes: int, disk_bytes: int) -> None:
        self.spool = spool
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.last = 0
        """The number of the newest event."""
        self.acked = 0
        self._memory: collections.deque[tuple[int, bytes]] = collections.deque()
        self._in_memory = 0
        self._disk: collections.deque[_OnDisk] = collections.deque()
        self._disk_end = 0
        """Bytes written to the spool file since it was last emptied."""
        self.full = False

    @property
    def kept(self) -> int:
        return len(self._memory) + len(self._disk)

    @property
    def disk_used(self) -> int:
        return self._disk_end

    def add(self, data: bytes, *, force: bool = False) -> int | None:
        """Keep the next event; its number, or None when there is no room left.
        ``force`` keeps it in memory whatever the bounds (a turn's last event)."""
        if self.full and not force:
            return None
        self._memory.append((self.last + 1, data))
        self._in_memory += len(data)
        while not force and self._in_memory > self.memory_bytes and self._memory:
            n, oldest = self._memory[0]
            if self._disk_end + len(oldest) > self.disk_bytes:
                self._memory.pop()
                self._in_memory -= len(data)
                self.full = True
                return None
            self._memory.popleft()
            self._in_memory -= len(oldest)
            self._write(n, oldest)
        self.last += 1
        return self.last

    def _write(self, n: int, data: bytes) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._disk.append(_OnDisk(n, self._disk_end, len(data)))
        self._disk_end += len(data)

    def after(self, n: int) -> Iterator[tuple[int, bytes]]:
        """Every kept event numbered above ``n``, oldest first."""
        if self._disk and self._disk[-1].n > n:
            with open(self.spool, "rb") as f:
                for entry in list(self._disk):
                    if entry.n > n:
                        f.seek(entry.offset)
                        yield entry.n, f.read(entry.size)
        for number, data in list(self._memory):
            if number > n:
                yield number, data

    def ack(self, n: int) -> None:
        """The gateway has everything up to ``n``: forget it."""
        self.acked = max(self.acked, n)
        while self._disk and self._disk[0].n <= self.acked:
            self._disk.popleft()
        if not self._disk and self._disk_end:
            self._disk_end = 0
            self.full = False
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.spool, 0)
        while self._memory and self._memory[0][0] <= self.acked:
            self._in_memory -= len(self._memory.popleft()[1])

    def close(self) -> None:
        """Forget everything and remove the spool file."""
        self._memory.clear()
        self._disk.clear()
        self._in_memory = self._disk_end = 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool)
