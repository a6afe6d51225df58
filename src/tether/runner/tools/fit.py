"""Fitting a tool result into one frame of the gateway's size limit.

A result that does not fit would be refused by the gateway and the call would wait out
its deadline (or, far over the limit, break the connection and be re-sent again and
again). So the runner cuts it down before it is sent: the longest list (grep matches,
glob paths, directory entries) keeps as many leading items as fit, then the longest
text (a file's content, a command's output) is cut with a marker; either way the
result's ``truncated`` flag is set. The result stays valid for its type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from tether.errors import TooLarge

__all__ = ["FIT_MARKER", "FRAME_OVERHEAD", "fit", "fit_text"]

FIT_MARKER = "\n[... cut to fit the gateway's frame limit: {dropped} more bytes ...]\n"
FRAME_OVERHEAD = 4096
"""Bytes left for the JSON-RPC envelope around a result."""

S = TypeVar("S", bound=msgspec.Struct)
_encode = msgspec.json.encode


def _largest(fields: dict[str, Any], kind: type[list[Any]] | type[str]) -> str | None:
    """The name of the longest non-empty field of type ``kind``."""
    candidates = [(len(v), k) for k, v in fields.items() if isinstance(v, kind) and v]
    return max(candidates)[1] if candidates else None


def _longest_fitting(size: int, fits: Callable[[int], bool]) -> int:
    """The largest ``n`` in ``0..size`` with ``fits(n)`` (``fits`` is monotone)."""
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_text(text: str, keep: int) -> str:
    """The first ``keep`` UTF-8 bytes of ``text`` (whole characters) plus the marker."""
    raw = text.encode("utf-8")
    if len(raw) <= keep:
        return text
    head = raw[:keep].decode("utf-8", "ignore")
    return head + FIT_MARKER.format(dropped=len(raw) - len(head.encode("utf-8")))


def fit(result: S, limit: int) -> bytes:
    """The JSON of ``result``, cut down to at most ``limit`` bytes (see the module doc)."""
    data = _encode(result)
    if len(data) <= limit:
        return data
    fields = msgspec.structs.asdict(result)
    flag = {"truncated": True} if "truncated" in fields else {}

    def with_(**changes: Any) -> bytes:
        return _encode(msgspec.structs.replace(result, **flag, **changes))

    listed = _largest(fields, list)
    if listed is not None:
        items = fields[listed]
        keep = _longest_fitting(len(items), lambda n: len(with_(**{listed: items[:n]})) <= limit)
        result = msgspec.structs.replace(result, **flag, **{listed: items[:keep]})
        data = _encode(result)
        if len(data) <= limit:
            return data
        fields = msgspec.structs.asdict(result)
    texted = _largest(fields, str)
    if texted is not None:
        text: str = fields[texted]
        size = len(text.encode("utf-8"))
        keep = _longest_fitting(size, lambda n: len(with_(**{texted: fit_text(text, n)})) <= limit)
        data = with_(**{texted: fit_text(text, keep)})
        if len(data) <= limit:
            return data
    raise TooLarge(
        f"the result does not fit the gateway's frame limit of {limit} bytes",
        data={"limit": limit},
    )
