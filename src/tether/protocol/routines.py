"""Params and results of ``routine.*``: scheduled runs (docs/routines.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from tether.types import ROUTINE_NAME, CatchUp

__all__ = [
    "RoutineAddParams",
    "RoutineInfo",
    "RoutineList",
    "RoutineListParams",
    "RoutineRef",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ROUTINE_NAME)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RoutineAddParams(_Params):
    """A routine: at each due time of ``cron`` in ``tz``, ``input`` starts a run in the
    session as the caller, who approves its requests."""

    name: Name
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """Five fields (``0 9 * * 1-5``), or six with seconds as the last (``* * * * * */2``),
    or an alias (``@daily``)."""
    session_id: SessionId
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    """What each run is asked (not a ``/`` command; ``//`` sends a leading ``/``)."""
    tz: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """An IANA zone (``Asia/Shanghai``); unset: the gateway's ``[routines] timezone``."""
    catch_up: CatchUp | None = None
    """Due times missed while no gateway ran: ``once`` or ``skip``; unset: the gateway's
    ``[routines] catch_up``."""


class RoutineListParams(_Params):
    session_id: SessionId | None = None
    """Only this session's routines."""


class RoutineRef(_Params):
    routine: Ref
    """Name or id."""


class RoutineInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    owner: str
    """The principal its runs start as (a user id, or ``admin``/``local-admin``)."""
    owner_name: str
    session_id: str
    cron: str
    tz: str
    input: str
    state: Literal["active", "paused"]
    catch_up: CatchUp
    next_fire_at: float | None
    """When it is next due (unset while paused)."""
    last_fired_at: float | None
    last_run_id: str | None
    source: Literal["cli", "config"]
    created_at: float
    updated_at: float


class RoutineList(msgspec.Struct, kw_only=True):
    routines: list[RoutineInfo]
