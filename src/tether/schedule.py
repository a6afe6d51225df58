"""Cron schedules of routines: validation and the next (and latest) due times, in a zone.

Pure and synchronous: the config, the gateway's routine API and its scheduler all use it.
A schedule is a cron expression (croniter's syntax) and an IANA time zone:

- five fields, ``minute hour day-of-month month day-of-week`` (``0 9 * * 1-5``), or
- six, with **seconds as the sixth (last) field** (``* * * * * */2``: every 2 s), or
- an alias: ``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.

Times are seconds since the epoch. Across daylight-saving changes: a wall-clock time
that does not exist (spring forward) runs at the first time after it; a wall-clock time
that happens twice (fall back) runs once, the first time, when the schedule names its
hours; a schedule that runs every hour (``*`` in the hour field) keeps real time.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterError, croniter

from tether.errors import InvalidParams

__all__ = ["MAX_CRON_LENGTH", "Schedule", "check_cron", "check_zone", "local_time"]

MAX_CRON_LENGTH = 200
_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MAX_STEPS = 8
"""Repeated wall-clock times skipped in a row at most (one fall-back hour needs a few)."""


def check_cron(expr: str) -> str:
    """The expression, normalised (single spaces); :class:`InvalidParams` if it is not a
    five- or six-field cron expression or an alias."""
    text = " ".join(expr.split())
    if not text or len(text) > MAX_CRON_LENGTH:
        raise InvalidParams(
            f"cron expression must be 1-{MAX_CRON_LENGTH} characters", data={"field": "cron"}
        )
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise InvalidParams(
                f"unknown cron alias {text!r} (known: {', '.join(sorted(_ALIASES))})",
                data={"field": "cron"},
            )
        return text.lower()
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidParams(
            f"cron expression {text!r} has {len(fields)} fields: use 5 "
            "(minute hour day month weekday) or 6 (the same, then seconds)",
            data={"field": "cron"},
        )
    try:
        croniter(text)
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise InvalidParams(
            f"invalid cron expression {text!r}: {exc}", data={"field": "cron"}
        ) from None
    return text


def check_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``UTC``); :class:`InvalidParams` if
    there is none by that name."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise InvalidParams(f"unknown time zone {name!r}", data={"field": "tz"})
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidParams(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)",
            data={"field": "tz"},
        ) from None


class Schedule:
    """A valid cron expression in a time zone."""

    def __init__(self, cron: str, tz: str) -> None:
        self.cron = check_cron(cron)
        self.tz = tz
        self.zone = check_zone(tz)
        self._fixed_hours = self.cron.startswith("@") or self.cron.split(" ")[1] != "*"

    def next_after(self, when: float) -> float:
        """The first due time strictly after ``when``."""
        it = croniter(self.cron, datetime.fromtimestamp(when, self.zone))
        due: datetime = it.get_next(datetime)
        for _ in range(_MAX_STEPS):
            if not (self._fixed_hours and _repeated(due)):
                break
            due = it.get_next(datetime)
        return due.timestamp()

    def latest_at_or_before(self, when: float) -> float:
        """The last due time at or before ``when``."""
        after = self.next_after(when - 1e-3)
        if after <= when:
            return after
        it = croniter(self.cron, datetime.fromtimestamp(when, self.zone))
        due: datetime = it.get_prev(datetime)
        for _ in range(_MAX_STEPS):
            if not (self._fixed_hours and _repeated(due)):
                break
            due = it.get_prev(datetime)
        return due.timestamp()


def local_time(when: float, tz: str) -> str:
    """``when`` as wall-clock time in ``tz`` with the zone's abbreviation
    (``2026-01-05 09:00:00 CST``); in UTC if ``tz`` is unknown."""
    try:
        zone = check_zone(tz)
    except InvalidParams:
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(when, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _repeated(due: datetime) -> bool:
    """Whether ``due`` is the second occurrence of a wall-clock time (a fall-back hour)."""
    first = due.replace(fold=0)
    return due.utcoffset() != first.utcoffset() and due.timestamp() != first.timestamp()
