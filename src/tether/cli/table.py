"""Plain-text tables for list output: a header row, then columns padded to fit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["table"]


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
