"""Tool-call records ride the group-commit writer on both engines."""

from __future__ import annotations

import asyncio

from tether.ledger import Ledger


async def test_create_and_finish_batched(ledger: Ledger) -> None:
    async def one(i: int) -> None:
        await ledger.tool_calls.create(
            call_id=f"call_{i:04d}",
            run_id=None,
            runner_id="rnr_x",
            tool="noop",
            args="{}",
            args_sha256="0" * 64,
            workspace="app",
            decision="allow",
            token_id=f"tok{i}",
            requested_by="admin",
            now=1.0,
        )
        await ledger.tool_calls.finish(
            f"call_{i:04d}", state="succeeded", result='{"ok":true}', now=2.0
        )
        await ledger.tool_calls.finish(
            f"call_{i:04d}", state="failed", error_code="x", now=3.0
        )  # once only

    batches = ledger.writer.batches
    await asyncio.gather(*(one(i) for i in range(100)))
    assert ledger.writer.batches - batches < 200  # shared commits
    record = await ledger.tool_calls.get("call_0042")
    assert (record.state, record.result, record.finished_at, record.token_id) == (
        "succeeded",
        '{"ok":true}',
        2.0,
        "tok42",
    )
    assert record.error_code is None
