"""Pieces of command help: the examples every command shows below its options."""

from __future__ import annotations

__all__ = ["examples"]


def examples(*lines: str, after: str = "") -> str:
    """A help epilog: ``Examples:`` with command lines kept as written, then ``after``.

    ``\\b`` tells click not to rewrap the paragraph that follows it.
    """
    text = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
    return f"{text}\n\n{after}" if after else text
