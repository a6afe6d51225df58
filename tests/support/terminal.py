"""`tether chat` in a pseudo-terminal (pexpect), with its plain-text transcript to read and
its screen as a terminal would show it (pyte emulates one)."""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pexpect
import pyte

from tests.support.process import SCALE, tether_env

_count = itertools.count()


class _Screen(pyte.Screen):  # type: ignore[misc]
    """A screen that answers the program's questions (the cursor position) as a terminal."""

    answer: Callable[[str], object] = staticmethod(lambda data: None)

    def write_process_input(self, data: str) -> None:
        self.answer(data)


class ChatTerminal:
    """One `tether chat` process on a 30x110 terminal. What it shows in the scrollback is
    read from ``--transcript`` (exact, plain text); the prompt and status line (redrawn
    in place) from the terminal itself."""

    def __init__(self, home: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.path = home / f"chat-{next(_count)}.txt"
        full = tether_env(home, env)
        full.update({"TERM": "xterm", "LANG": "C.UTF-8"})
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "tether", "chat", "--transcript", str(self.path), *args],
            env=full,
            dimensions=(30, 110),
            encoding="utf-8",
            timeout=20 * SCALE,
        )
        self.screen: list[str] = []
        """Everything it wrote to the terminal, escapes and all."""
        self.display = _Screen(110, 30)
        self.display.answer = self.child.send  # it asks where the cursor is (CPR)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True, name="chat-pty")
        self._reader.start()
        self._stream = pyte.Stream(self.display)
        self.wait_for("(?i)tether chat · keys|token|refused|cannot")

    def transcript(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float = 20, count: int = 1) -> str:
        """The transcript once ``pattern`` (a regex) is in it ``count`` times (bounded)."""
        deadline = time.monotonic() + timeout * SCALE
        while time.monotonic() < deadline:
            text = self.transcript()
            if len(re.findall(pattern, text)) >= count:
                return text
            if not self.child.isalive():
                break
            self._drain()
            time.sleep(0.05)
        raise AssertionError(
            f"{pattern!r} not shown {count}x; transcript:\n{self.transcript()}\n"
            f"screen:\n{self.shows()}"
        )

    def shows(self) -> str:
        """What the terminal shows now, line by line."""
        with self._lock:
            return "\n".join(line.rstrip() for line in self.display.display)

    def expect_screen(self, pattern: str, timeout: float = 20) -> str:
        """Wait until the terminal shows ``pattern`` (a regex; the status line included)."""
        deadline = time.monotonic() + timeout * SCALE
        while time.monotonic() < deadline:
            shown = self.shows()
            if re.search(pattern, shown):
                return shown
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not on the screen:\n{self.shows()}")

    def expect_screen_without(self, pattern: str, timeout: float = 20) -> str:
        """Wait until the terminal no longer shows ``pattern``."""
        deadline = time.monotonic() + timeout * SCALE
        while time.monotonic() < deadline:
            shown = self.shows()
            if not re.search(pattern, shown):
                return shown
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} still on the screen:\n{self.shows()}")

    def _drain(self) -> None:
        """Let the reader catch up (it reads all the time, so the program never blocks on
        a full terminal and its questions are answered at once)."""
        time.sleep(0.01)

    def _read(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError, ValueError):
                return
            with self._lock:
                self.screen.append(data)
                self._stream.feed(data)

    def type(self, text: str) -> None:
        """Type a line and Enter."""
        self.child.send(text + "\r")

    def key(self, key: str) -> None:
        self.child.send(key)

    def decide(self, key: str) -> None:
        """Answer an approval with ``a``, ``s`` or ``d``: the key, then Enter (a key that
        arrives while output is being printed is taken as typed text; Enter sends it, and
        after a key that was taken, Enter sends an empty line, which does nothing)."""
        self.child.send(key)
        time.sleep(0.1)
        self.child.send("\r")

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def leave(self, timeout: float = 20) -> int:
        """Ctrl-D; the exit status."""
        self.child.sendcontrol("d")
        deadline = time.monotonic() + timeout * SCALE
        while self.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._reader.join(5)
        self.child.close()
        return int(self.child.exitstatus or 0)

    def wait_exit(self, timeout: float = 20) -> int:
        """Its exit status, once it has ended by itself (bounded)."""
        deadline = time.monotonic() + timeout * SCALE
        while self.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._reader.join(5)
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
