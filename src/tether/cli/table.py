"""Plain-text tables for list output: a header row, then columns padded to fit, and the
cell formats they share."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

__all__ = ["short", "table", "when"]


def when(ts: float | None) -> str:
    """A local timestamp to the second, or ``-``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def short(text: str | None, width: int = 48) -> str:
    """One line of at most ``width`` characters (newlines shown as ⏎)."""
    text = (text or "").replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, gap: int = 2) -> str:
    """``headers`` over ``rows``, each column as wide as its widest cell (the last one is
    not padded, so lines carry no trailing blanks)."""
    grid = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(headers))]
    spacer = " " * gap
    return "\n".join(
        spacer.join(
            cell if i == len(line) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ).rstrip()
        for line in grid
    )
