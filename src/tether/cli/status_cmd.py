"""``tether status``: the whole installation at a glance, from the methods every other
command uses (``gateway.info``, ``runner.list``, ``run.list``, ``request.list``,
``delivery.list``) and the service manager's word on installed units."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, open_client
from tether.cli.help import examples

if TYPE_CHECKING:
    from tether.transport.client import RpcClient

__all__ = ["EXIT_ATTENTION", "register"]

EXIT_ATTENTION = 3
ACTIVE = ("running", "waiting", "queued")
OVERDUE = 60.0
"""Seconds past its next attempt after which a pending delivery counts as stuck."""
NOT_RUNNING = "gateway not running; start it with `tether up` or `tether service install gateway`"


async def _gather(client: RpcClient) -> dict[str, Any]:
    from tether.errors import Forbidden
    from tether.protocol.access import RequestListParams
    from tether.protocol.chat import DeliveryListParams
    from tether.protocol.methods import (
        DELIVERY_LIST,
        GATEWAY_INFO,
        PING,
        REQUEST_LIST,
        RUN_LIST,
        RUNNER_LIST,
    )
    from tether.protocol.runs import RunListParams
    from tether.protocol.system import Empty, PingParams
    from tether.types import RunState

    now = time.time()
    gateway: dict[str, Any] = {"up": True, "target": client.target}
    try:
        info = await client.call(GATEWAY_INFO, Empty())
        gateway.update(
            version=info.version,
            uptime=round(info.uptime, 1),
            url=info.url,
            ledger=info.ledger or None,
            pid=info.pid,
        )
    except Forbidden:  # a member's or viewer's token: only what ping says
        pong = await client.call(PING, PingParams())
        gateway.update(version=pong.version, uptime=None, url=None, ledger=None, pid=None)

    listed = await client.call(RUNNER_LIST, Empty())
    enrolled = [r for r in listed.runners if r.status == "enrolled"]
    runners = {
        "online": sorted(r.name for r in enrolled if r.online),
        "offline": sorted(r.name for r in enrolled if not r.online),
        "pending": sorted(r.name for r in listed.runners if r.status == "pending"),
    }

    active = [RunState(state) for state in ACTIVE]
    page = await client.call(RUN_LIST, RunListParams(states=active, limit=1000))
    runs: dict[str, Any] = dict.fromkeys(ACTIVE, 0)
    for run in page.runs:
        runs[run.state] += 1
    runs["more"] = page.next_cursor is not None

    open_requests = (await client.call(REQUEST_LIST, RequestListParams())).requests
    oldest = min((r.created_at for r in open_requests), default=None)
    requests = {
        "open": len(open_requests),
        "oldest_age": None if oldest is None else round(now - oldest, 1),
    }

    deliveries: dict[str, Any] | None
    try:
        stuck = await client.call(
            DELIVERY_LIST, DeliveryListParams(states=["pending", "dead"], limit=1000)
        )
    except Forbidden:
        deliveries = None  # the outbox is the owner's to see
    else:
        overdue = [
            d
            for d in stuck.deliveries
            if d.state == "pending" and (d.next_attempt_at or d.created_at) < now - OVERDUE
        ]
        deliveries = {
            "overdue": len(overdue),
            "dead": sum(1 for d in stuck.deliveries if d.state == "dead"),
        }
    return {
        "gateway": gateway,
        "runners": runners,
        "runs": runs,
        "requests": requests,
        "deliveries": deliveries,
    }


def _services() -> dict[str, Any]:
    from tether.cli.service_cmd import installed, unit_state
    from tether.cli.service_units import SERVICES

    out: dict[str, Any] = {}
    for service in SERVICES:
        where = installed(service)
        if where.path.exists():
            out[service] = {"unit": where.name, "state": unit_state(where)}
    return out


def _attention(report: dict[str, Any]) -> list[str]:
    """What needs a person's look, in words; empty when all is well."""
    notes = []
    offline = report["runners"]["offline"]
    if offline:
        notes.append(f"runner{'s' if len(offline) > 1 else ''} offline: {', '.join(offline)}")
    deliveries = report["deliveries"]
    if deliveries and deliveries["dead"]:
        notes.append(
            f"{deliveries['dead']} deliveries given up (tether deliveries list --state dead)"
        )
    if deliveries and deliveries["overdue"]:
        notes.append(f"{deliveries['overdue']} deliveries overdue (tether deliveries list)")
    for service, unit in report["services"].items():
        if unit["state"] == "failed":
            notes.append(f"service {service} failed (tether logs {service})")
    return notes


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _render(report: dict[str, Any]) -> str:
    gw = report["gateway"]
    if not gw["up"]:
        lines = [f"gateway     down: {NOT_RUNNING}"]
    else:
        where = gw["url"] or gw["target"]
        extra = f", up {_age(gw['uptime'])}" if gw["uptime"] is not None else ""
        ledger = f", ledger {gw['ledger']}" if gw["ledger"] else ""
        lines = [f"gateway     up: tether {gw['version']} at {where}{extra}{ledger}"]
        runners = report["runners"]
        total = len(runners["online"]) + len(runners["offline"])
        names = ", ".join(runners["online"]) or "none"
        text = f"runners     {len(runners['online'])}/{total} online ({names})"
        if runners["offline"]:
            text += f"; offline: {', '.join(runners['offline'])}"
        if runners["pending"]:
            text += f"; not enrolled yet: {', '.join(runners['pending'])}"
        lines.append(text)
        runs = report["runs"]
        more = "+" if runs["more"] else ""
        lines.append(
            f"runs        {runs['running']} running, {runs['waiting']} waiting, "
            f"{runs['queued']} queued{more}"
        )
        requests = report["requests"]
        oldest = (
            f" (oldest {_age(requests['oldest_age'])})"
            if requests["oldest_age"] is not None
            else ""
        )
        lines.append(f"requests    {requests['open']} open{oldest}")
        deliveries = report["deliveries"]
        if deliveries is None:
            lines.append("deliveries  not shown (owner only)")
        else:
            lines.append(
                f"deliveries  {deliveries['overdue']} overdue, {deliveries['dead']} given up"
            )
    for service, unit in report["services"].items():
        lines.append(f"service     {service}: {unit['unit']} {unit['state']}")
    if gw["up"]:
        lines += [f"attention   {note}" for note in report["attention"]]
    return "\n".join(lines)


def status(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show at a glance: the gateway, runners online, active runs, open requests, stuck
    deliveries, and the state of installed services."""
    from tether.errors import ConnectionClosed

    cli = context.current()
    config = cli.config()

    async def go() -> dict[str, Any]:
        async with await open_client(config, url, token) as client:
            return await _gather(client)

    try:
        report = context.run_async(go())
    except ConnectionClosed as exc:
        report = {"gateway": {"up": False, "error": exc.message}}
    report["services"] = _services()
    up = report["gateway"]["up"]
    report["attention"] = _attention(report) if up else [NOT_RUNNING]
    report["healthy"] = up and not report["attention"]
    cli.emit(report, lambda: typer.echo(_render(report)))
    if not up:
        raise typer.Exit(context.EXIT_FAILURE)
    if report["attention"]:
        raise typer.Exit(EXIT_ATTENTION)


def register(app: typer.Typer) -> None:
    app.command(
        name="status",
        epilog=examples(
            "tether status",
            "tether status --json",
            "tether status --url https://gw.example.com --token TOKEN",
            after="Exit status: 0 when all is well; 1 when the gateway cannot be reached; 3 "
            "when it is up but something needs attention (an enrolled runner offline, "
            "deliveries given up or overdue, a failed service). Open requests waiting for a "
            "person are shown but are not a problem.",
        ),
    )(status)
