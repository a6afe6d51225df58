"""``tether ping``: is the gateway there, and how fast does it answer?"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, open_client
from tether.cli.help import examples

__all__ = ["register"]


def ping(
    url: UrlOpt = None,
    token: TokenOpt = None,
    count: Annotated[
        int, typer.Option("--count", "-c", metavar="N", min=1, help="How many pings to send.")
    ] = 1,
    interval: Annotated[
        float,
        typer.Option("--interval", "-i", metavar="SECONDS", min=0.0, help="Seconds between pings."),
    ] = 0.2,
) -> None:
    """Ping the gateway and print the round-trip time.

    Uses the local Unix socket by default; with --url (ws://, wss://, http://, https://)
    it connects over WebSocket with --token (or $TETHER_TOKEN, or the local admin token).
    """
    cli = context.current()
    config = cli.config()

    async def go() -> dict[str, Any]:
        from tether.protocol.methods import PING
        from tether.protocol.system import PingParams

        async with await open_client(config, url, token) as client:
            rtts: list[float] = []
            version = ""
            for i in range(count):
                start = time.perf_counter()
                pong = await client.call(PING, PingParams())
                rtts.append((time.perf_counter() - start) * 1000)
                version = pong.version
                if not cli.json:
                    typer.echo(f"pong from {client.target}: seq={i + 1} time={rtts[-1]:.3f} ms")
                if i + 1 < count and interval:
                    import asyncio

                    await asyncio.sleep(interval)
            return {
                "target": client.target,
                "version": version,
                "count": count,
                "rtt_ms": [round(r, 3) for r in rtts],
                "min_ms": round(min(rtts), 3),
                "avg_ms": round(sum(rtts) / len(rtts), 3),
                "max_ms": round(max(rtts), 3),
            }

    result = context.run_async(go())
    cli.emit(
        result,
        f"{result['count']} pings to tether {result['version']}: "
        f"min/avg/max = {result['min_ms']:.3f}/{result['avg_ms']:.3f}/{result['max_ms']:.3f} ms",
    )


def register(app: typer.Typer) -> None:
    app.command(
        name="ping",
        epilog=examples(
            "tether ping",
            "tether ping -c 5 -i 0",
            "tether ping --url https://gw.example.com --token TOKEN --json",
            after="Exit status: 0 when the gateway answered; 1 when it cannot be reached or "
            "refuses the token.",
        ),
    )(ping)
