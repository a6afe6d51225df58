"""A hosted turn's event buffer: memory, then disk, then full (and the turn says so)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tether.protocol.hosted import TURN_ENDED, AgentEventNote
from tether.runner.agents.journal import TurnJournal
from tether.runner.agents.turns import Turn


def entries(journal: TurnJournal, after: int = 0) -> list[tuple[int, bytes]]:
    return list(journal.after(after))


def test_events_spill_to_disk_in_order_and_come_back_in_order(tmp_path: Path) -> None:
    journal = TurnJournal(tmp_path / "t.events", memory_bytes=30, disk_bytes=1000)
    for i in range(1, 11):
        assert journal.add(f"event-{i:02d}".encode()) == i
    assert journal.disk_used > 0  # the oldest went to disk
    assert [n for n, _ in entries(journal)] == list(range(1, 11))
    assert [d for _, d in entries(journal, 6)] == [f"event-{i:02d}".encode() for i in (7, 8, 9, 10)]


def test_acknowledged_events_are_forgotten_and_the_spool_emptied(tmp_path: Path) -> None:
    spool = tmp_path / "t.events"
    journal = TurnJournal(spool, memory_bytes=20, disk_bytes=1000)
    for _i in range(10):
        journal.add(b"x" * 10)
    assert spool.stat().st_size > 0
    journal.ack(8)
    assert [n for n, _ in entries(journal)] == [9, 10]
    assert spool.stat().st_size == 0
    journal.close()
    assert not spool.exists()


def test_past_the_disk_cap_nothing_more_is_kept(tmp_path: Path) -> None:
    journal = TurnJournal(tmp_path / "t.events", memory_bytes=10, disk_bytes=50)
    added = [journal.add(b"y" * 10) for _ in range(20)]
    assert None in added
    kept = added.index(None)
    assert journal.full
    assert journal.kept == kept
    assert journal.add(b"z") is None
    assert journal.add(b"last", force=True) == kept + 1  # a turn's end always fits


def test_a_turn_whose_buffer_fills_is_interrupted_and_ends_visibly(tmp_path: Path) -> None:
    sent: list[AgentEventNote] = []
    interrupted: list[str] = []
    turn = Turn(
        run_id="run_1",
        session_id="ses_1",
        runner="box",
        workspace="app",
        journal=TurnJournal(tmp_path / "t.events", memory_bytes=200, disk_bytes=400),
        send=lambda note: False,  # the gateway is away
        mask=lambda payload: payload,
    )
    turn.on_overflow = lambda t: interrupted.append(t.run_id)
    for i in range(100):
        turn.emit("agent.delta", {"text": f"chunk {i} " + "x" * 20})
    assert interrupted == ["run_1"]  # once
    turn.end("interrupted", reason="interrupted", message="stopped")
    # the gateway comes back and gets everything kept, ending with the reason
    turn.send = lambda note: sent.append(note) or True
    turn.replay(0)
    numbers = [note.n for note in sent]
    assert numbers == list(range(1, len(sent) + 1))
    last = sent[-1]
    assert last.kind == TURN_ENDED
    assert last.payload["reason"] == "buffer_full"
    assert "buffer" in last.payload["message"]
    assert msgspec.json.encode(last)  # every kept note is a valid wire message


def test_secrets_are_masked_before_anything_is_kept(tmp_path: Path) -> None:
    sent: list[AgentEventNote] = []
    turn = Turn(
        run_id="run_1",
        session_id="ses_1",
        runner="box",
        workspace="app",
        journal=TurnJournal(tmp_path / "t.events", memory_bytes=1000, disk_bytes=1000),
        send=lambda note: sent.append(note) or True,
        mask=lambda payload: {
            k: str(v).replace("s3cret", "[redacted]") for k, v in payload.items()
        },
    )
    turn.emit("agent.message", {"text": "the key is s3cret"})
    assert sent[0].payload == {"text": "the key is [redacted]"}
    assert b"s3cret" not in b"".join(d for _, d in turn.journal.after(0))
