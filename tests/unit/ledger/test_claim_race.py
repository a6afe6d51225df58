"""Many claimers on separate connections race for many runs: one owner per epoch, epochs rise."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tether.config import LedgerConfig
from tether.errors import Conflict
from tether.ledger import Ledger, NewEvent
from tether.types import RunState

RUNS = 120
CLAIMERS = 8


async def test_concurrent_claims_and_reclaims(database_url: str | None, tmp_path: Path) -> None:
    config = LedgerConfig(database_url=database_url)
    ledgers = [await Ledger.open(config, tmp_path) for _ in range(CLAIMERS)]
    try:
        main = ledgers[0]
        for _ in range(RUNS):
            session = await main.sessions.create(agent="script")
            event = NewEvent(seq=1, kind="run.queued", source="gateway", payload="{}", created_at=0)
            await main.runs.create(
                session_id=session.id, agent="s", input="", created_by=None, event=event
            )

        held: dict[tuple[str, int], str] = {}
        finished: set[str] = set()

        def record(run_id: str, epoch: int, owner: str) -> None:
            assert (run_id, epoch) not in held, f"two owners at epoch {epoch} of {run_id}"
            held[(run_id, epoch)] = owner

        async def claimer(index: int, ledger: Ledger) -> None:
            owner = f"gw-{index}"
            rng = random.Random(index)
            idle = 0
            while len(finished) < RUNS and idle < 200:
                run = await ledger.runs.claim_next(owner, lease_seconds=0.05)
                if run is None:
                    # nothing queued: try to take over a run whose short lease ran out
                    stale = await ledger.runs.reclaimable(limit=5)
                    run = None
                    for candidate in stale:
                        run = await ledger.runs.reclaim(
                            candidate.id, epoch=candidate.epoch, owner=owner, lease_seconds=0.05
                        )
                        if run is not None:
                            break
                    if run is None:
                        idle += 1
                        await asyncio.sleep(0.005)
                        continue
                idle = 0
                record(run.id, run.epoch, owner)
                try:
                    if rng.random() < 0.3:
                        await asyncio.sleep(0.06)  # let the lease lapse: someone may reclaim
                    await ledger.runs.renew(run.id, owner, run.epoch, 0.05)
                    await ledger.runs.transition(run.id, epoch=run.epoch, to=RunState.SUCCEEDED)
                    finished.add(run.id)
                except Conflict:
                    pass  # fenced out: another claimer holds a newer epoch

        await asyncio.gather(*(claimer(i, led) for i, led in enumerate(ledgers)))
        assert len(finished) == RUNS
        for run_id in finished:
            run = await main.runs.get(run_id)
            assert run.state == RunState.SUCCEEDED
            epochs = sorted(e for (r, e) in held if r == run_id)
            assert epochs == list(range(1, run.epoch + 1)), "every epoch had exactly one owner"
    finally:
        for led in ledgers:
            await led.aclose()
