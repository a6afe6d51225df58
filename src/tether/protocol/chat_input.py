"""A chat message as an agent's input: the person's own words first, then the context
tether adds (who wrote it in a group, the message it replies to, what it carries) after
one marker line.

Agents that act on the words themselves (the operator agent's ``!command``) read only
:func:`own_words`, so a quoted message or a file name, which the sender did not type and
may not have written, can never become part of a command.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CONTEXT_MARK", "compose", "own_words"]

CONTEXT_MARK = "--- context from the chat (added by tether, not typed by the sender) ---"

_QUOTED_LINES = 20


def _line(text: str) -> str:
    """One line: no line breaks, no control characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def compose(
    text: str,
    *,
    sender: str = "",
    in_group: bool = False,
    quoted: str | None = None,
    attachments: Iterable[str] = (),
) -> str:
    """The input for ``text`` and its context; just ``text`` when there is none."""
    context: list[str] = []
    if in_group and _line(sender):
        context.append(f"from: {_line(sender)[:200]} (in a group chat)")
    if quoted:
        lines = quoted.splitlines()[:_QUOTED_LINES]
        context.append("replying to:\n" + "\n".join("> " + line for line in lines))
    context.extend(f"attachment: {_line(a)}" for a in attachments)
    if not context:
        return text
    return "\n\n".join(p for p in (text, CONTEXT_MARK, *context) if p)


def own_words(composed: str) -> str:
    """What the sender typed: the input without the context :func:`compose` added."""
    head, mark, _ = composed.partition("\n\n" + CONTEXT_MARK)
    if mark:
        return head
    return "" if composed.startswith(CONTEXT_MARK) else composed
