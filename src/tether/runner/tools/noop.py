"""``noop``: does nothing and says so. Checks the whole tool-call path (token, policy,
round trip) without touching the machine; benchmarks use it as the cheapest call."""

from __future__ import annotations

from typing import Annotated

import msgspec

from tether.runner.tools.base import ToolContext

__all__ = ["NoopParams", "NoopResult", "noop"]


class NoopParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    echo: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    """Returned as is."""


class NoopResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ok: bool
    echo: str


async def noop(ctx: ToolContext, params: NoopParams) -> NoopResult:
    return NoopResult(ok=True, echo=params.echo)
