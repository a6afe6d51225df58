"""Durable event appends per second on SQLite and PostgreSQL: group commit vs one
transaction per event, measured in the same run.

    python bench/ledger.py [--events 64000] [--appenders 64] [--pg DSN] [--out FILE]

Each appender owns one run and appends ~500-byte events one at a time, waiting for each
commit before the next (what a run does). "One transaction per event" is the same
writer with a batch size of 1. Targets: >= 60,000 events/s on SQLite and >= 20,000/s
on PostgreSQL with group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, short_tempdir, verdict, write_json
from tether.config import LedgerConfig
from tether.ledger import Ledger, NewEvent

PAYLOAD = '{"text":"' + "x" * 480 + '"}'
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


async def append_rate(
    url: str | None, data_dir: Path, *, events: int, appenders: int, batch: int
) -> dict[str, Any]:
    config = LedgerConfig(database_url=url, group_commit_max_rows=batch)
    ledger = await Ledger.open(config, data_dir)
    try:
        session = await ledger.sessions.create(agent="bench")
        runs = []
        for _ in range(appenders):
            first = NewEvent(
                seq=1, kind="run.queued", source="gateway", payload="{}", created_at=time.time()
            )
            run = await ledger.runs.create(
                session_id=session.id, agent="bench", input="", created_by=None, event=first
            )
            runs.append(run.id)
        per = max(1, events // appenders)

        async def appender(run_id: str) -> None:
            for seq in range(2, per + 2):
                event = NewEvent(
                    seq=seq,
                    kind="agent.delta",
                    source="agent",
                    payload=PAYLOAD,
                    created_at=time.time(),
                )
                await ledger.events.append(run_id, 0, [event])

        batches0 = ledger.writer.batches
        start = time.perf_counter()
        await asyncio.gather(*(appender(r) for r in runs))
        elapsed = time.perf_counter() - start
        total = per * appenders
        # every acknowledged event is really there
        stored = sum([await ledger.events.last_seq(r) - 1 for r in runs])
        assert stored == total, (stored, total)
        return {
            "events": total,
            "seconds": elapsed,
            "events_per_s": total / elapsed,
            "batches": ledger.writer.batches - batches0,
            "rows_per_batch": total / max(1, ledger.writer.batches - batches0),
        }
    finally:
        await ledger.aclose()


async def pg_database(admin_dsn: str) -> tuple[str, str]:
    import asyncpg

    name = f"tether_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def drop_pg(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    single = max(args.appenders, args.events // 8)
    with short_tempdir() as home:
        results["sqlite_group"] = await append_rate(
            None, home / "a", events=args.events, appenders=args.appenders, batch=512
        )
        results["sqlite_single"] = await append_rate(
            None, home / "b", events=single, appenders=args.appenders, batch=1
        )
        results["sqlite_group_wide"] = await append_rate(
            None, home / "c", events=args.events, appenders=args.appenders * 4, batch=512
        )
        if args.pg != "off":
            for key, events, batch, appenders in (
                ("pg_group", args.events, 512, args.appenders),
                ("pg_single", single // 2, 1, args.appenders),
                ("pg_group_wide", args.events, 512, args.appenders * 4),
            ):
                name, url = await pg_database(args.pg)
                try:
                    results[key] = await append_rate(
                        url, home / key, events=events, appenders=appenders, batch=batch
                    )
                finally:
                    await drop_pg(args.pg, name)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=64_000)
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument(
        "--pg", default=DEFAULT_PG, help="admin DSN of a PostgreSQL server, or 'off'"
    )
    parser.add_argument("--out", help="JSON output file (default bench/results/ledger.json)")
    args = parser.parse_args()
    results = uvloop.run(run_all(args))

    rows = []
    for engine in ("sqlite", "pg"):
        group, single = results.get(f"{engine}_group"), results.get(f"{engine}_single")
        if group is None or single is None:
            continue
        name = "SQLite" if engine == "sqlite" else "PostgreSQL"
        rows.append(
            [
                f"{name}: one transaction per event (baseline)",
                single["events_per_s"],
                1.0,
                single["rows_per_batch"],
            ]
        )
        rows.append(
            [
                f"{name}: group commit",
                group["events_per_s"],
                group["events_per_s"] / single["events_per_s"],
                group["rows_per_batch"],
            ]
        )
        wide = results[f"{engine}_group_wide"]
        rows.append(
            [
                f"{name}: group commit, {args.appenders * 4} appenders",
                wide["events_per_s"],
                wide["events_per_s"] / single["events_per_s"],
                wide["rows_per_batch"],
            ]
        )
    print_table(
        f"Durable event appends ({args.appenders} appenders, ~500-byte events, "
        "each awaiting its commit)",
        ["path", "events/s", "ratio", "rows/commit"],
        rows,
    )
    targets = {
        "sqlite_events_per_s": {"value": results["sqlite_group"]["events_per_s"], "target": 60_000}
    }
    if "pg_group" in results:
        targets["pg_events_per_s"] = {
            "value": results["pg_group"]["events_per_s"],
            "target": 20_000,
        }
    for t in targets.values():
        t["met"] = t["value"] >= t["target"]
    print_table(
        "Targets",
        ["measure", "value", "target", "verdict"],
        [[k, v["value"], f">= {v['target']:,}", verdict(v["met"])] for k, v in targets.items()],
    )
    write_json(
        "ledger", {"results": results, "targets": targets, "appenders": args.appenders}, args.out
    )


if __name__ == "__main__":
    main()
