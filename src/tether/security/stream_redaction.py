"""Redaction of streamed output: a secret split across chunks is still masked.

A :class:`StreamRedactor` holds back the tail of what it was fed and releases text only
where no secret can straddle the cut: at the last line break (secrets other than PEM
blocks fit on one line), and never closer than ``window`` characters to the end of a
long line. Any match that crosses the cut moves the cut to the match's start. A PEM
private-key block is masked as a block: from its ``BEGIN`` line everything is held until
its ``END`` line arrives; when that takes more than ``max_hold`` characters, what is
held is masked and so is everything after it until the ``END`` line.
"""

from __future__ import annotations

from tether.security.redaction import MASK, redact
from tether.security.secret_kinds import LONGEST_SECRET, PEM_BEGIN, PEM_END, spans

__all__ = ["StreamRedactor"]

_END_TAIL = 80
"""Characters kept while inside a PEM block, so an END line split across chunks is found."""


class StreamRedactor:
    """Feed chunks with :meth:`feed`; at the end of the stream call :meth:`flush`."""

    def __init__(self, window: int = LONGEST_SECRET, max_hold: int = 64 * 1024) -> None:
        self.window = window
        self.max_hold = max(max_hold, window)
        self._held = ""
        self._in_block = False

    def feed(self, chunk: str) -> str:
        """Redacted text that is safe to release now (may be empty)."""
        buf = self._held + chunk
        out = ""
        if self._in_block:
            end = PEM_END.search(buf)
            if end is None:
                self._held = buf[-_END_TAIL:]
                return ""
            buf = buf[end.end() :]
            self._in_block = False
        cut = self._cut(buf)
        released, held = buf[:cut], buf[cut:]
        if len(held) > self.max_hold:
            begin = PEM_BEGIN.search(held)
            if begin is not None and PEM_END.search(held, begin.end()) is None:
                released += held[: begin.start()]
                out = redact(released) + MASK
                self._in_block = True
                self._held = held[-_END_TAIL:]
                return out
            released, held = buf, ""
        self._held = held
        return redact(released) if released else ""

    def flush(self) -> str:
        """Release (redacted) whatever is still held."""
        held, self._held = self._held, ""
        if self._in_block:
            self._in_block = False
            return ""
        return redact(held) if held else ""

    def _cut(self, buf: str) -> int:
        line_end = max(buf.rfind("\n"), buf.rfind("\r")) + 1
        cut = max(line_end, len(buf) - self.window, 0)
        for begin in PEM_BEGIN.finditer(buf, 0, cut):
            if PEM_END.search(buf, begin.end()) is None:
                cut = begin.start()  # a block still open: hold it from its BEGIN line
                break
        moved = True
        while moved:  # each move only goes left, so this ends
            moved = False
            for start, end in spans(buf):
                if start < cut < end:
                    cut, moved = start, True
        return cut
