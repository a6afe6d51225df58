"""The routine scheduler against a real ledger (both engines) and a router stand-in that
keeps receipts in the ledger as the real one does: due times fire once, a missed window
once (or not at all with ``skip``), a retry after a crash is a duplicate that only
advances, and config routines are synced by name."""

from __future__ import annotations

from typing import Any

import pytest

from tether.channels import InboundMessage
from tether.config import RoutinesConfig, RoutineSpec
from tether.errors import ConfigError
from tether.gateway.chat_commands import Turn
from tether.gateway.router import Pending
from tether.gateway.routines import ROUTINE_CHANNEL, RoutineScheduler, event_id
from tether.ledger import Ledger
from tether.schedule import Schedule

EVERY_2S = "* * * * * */2"
T0 = 1_800_000_000.0  # a due time of EVERY_2S


class Router:
    """What the scheduler needs of the router: ``submit``, deduplicated by the receipt."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.started: list[InboundMessage] = []
        self.items: list[Pending] = []

    async def submit(self, item: Pending) -> tuple[Turn | None, bool]:
        message = item.message
        fresh = await self.ledger.conversations.record(
            message.channel,
            message.event_id,
            message="{}",
            message_id=None,
            conversation_id=message.conversation,
            claimed_by="test",
        )
        if not fresh:
            return None, True
        self.started.append(message)
        self.items.append(item)
        return Turn(disposition="started", run_id=f"run_{len(self.started)}"), False


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def setup(
    ledger: Ledger, *, catch_up: str = "once", now: float = T0 - 0.5, **config: Any
) -> tuple[RoutineScheduler, Router, Clock, str]:
    clock = Clock(now)
    router = Router(ledger)
    scheduler = RoutineScheduler(ledger, router, RoutinesConfig(**config), clock=clock)  # type: ignore[arg-type]
    session = await ledger.sessions.create(agent="script", created_by="usr_alice")
    record = await ledger.routines.add(
        name="tick",
        owner="usr_alice",
        session_id=session.id,
        cron=EVERY_2S,
        tz="UTC",
        input="say tick",
        catch_up=catch_up,
        next_fire_at=Schedule(EVERY_2S, "UTC").next_after(clock.now),
    )
    return scheduler, router, clock, record.id


async def test_each_due_time_fires_once_as_the_owner_in_the_session(ledger: Ledger) -> None:
    scheduler, router, clock, rid = await setup(ledger)
    assert await scheduler.tick() == 0  # not due yet
    for step in range(3):
        clock.now = T0 + step * 2 + 0.1
        assert await scheduler.tick() == 1
        assert await scheduler.tick() == 0  # once per due time
    assert [m.event_id for m in router.started] == [event_id(rid, T0 + 2 * i) for i in range(3)]
    routine = await ledger.routines.get(rid)
    for message, item in zip(router.started, router.items, strict=True):
        assert (message.channel, message.sender.id, message.text) == (
            ROUTINE_CHANNEL,
            "usr_alice",
            "say tick",
        )
        assert item.session_id == routine.session_id
    assert (routine.next_fire_at, routine.last_fired_at, routine.last_run_id) == (
        T0 + 6,
        T0 + 4,
        "run_3",
    )


async def test_a_missed_window_runs_once_for_the_latest_due_time(ledger: Ledger) -> None:
    scheduler, router, clock, rid = await setup(ledger)
    clock.now = T0 + 9.5  # T0, T0+2 … T0+8 all passed while no gateway ran
    assert await scheduler.tick() == 1
    assert [m.event_id for m in router.started] == [event_id(rid, T0 + 8)]
    assert (await ledger.routines.get(rid)).next_fire_at == T0 + 10
    clock.now = T0 + 10.1  # and the schedule goes on
    await scheduler.tick()
    assert [m.event_id for m in router.started][1:] == [event_id(rid, T0 + 10)]


async def test_skip_runs_nothing_for_a_missed_window(ledger: Ledger) -> None:
    scheduler, router, clock, rid = await setup(ledger, catch_up="skip")
    clock.now = T0 + 9.5
    await scheduler.tick()
    assert router.started == []
    routine = await ledger.routines.get(rid)
    assert (routine.next_fire_at, routine.last_fired_at) == (T0 + 10, None)
    clock.now = T0 + 10.1
    await scheduler.tick()
    assert [m.event_id for m in router.started] == [event_id(rid, T0 + 10)]


async def test_a_single_due_time_noticed_too_late_counts_as_missed(ledger: Ledger) -> None:
    scheduler, router, clock, rid = await setup(ledger, catch_up="skip", misfire_grace=5.0)
    await ledger.routines.redefine(rid, next_fire_at=T0, cron="0 0 1 1 *")  # yearly
    clock.now = T0 + 4.0  # late, within the grace: on time
    await scheduler.tick()
    assert len(router.started) == 1
    await ledger.routines.redefine(rid, next_fire_at=T0 + 10)
    clock.now = T0 + 16.0  # later than the grace
    await scheduler.tick()
    assert len(router.started) == 1


async def test_a_retry_after_a_crash_between_receipt_and_advance_only_advances(
    ledger: Ledger,
) -> None:
    scheduler, router, clock, rid = await setup(ledger)
    clock.now = T0 + 0.1
    stale = await ledger.routines.get(rid)
    assert await scheduler.fire(stale, clock.now)
    # another gateway read the routine before the first advanced: its attempt is a
    # duplicate, and its compare-and-set finds the due time moved
    assert not await scheduler.fire(stale, clock.now)
    assert len(router.started) == 1
    # a gateway that died after the receipt and before the advance: the routine is still
    # due at the same time; the restarted one's firing is a duplicate and advances
    clock.now = T0 + 2.1
    due = await ledger.routines.get(rid)
    await router.submit(
        Pending(
            message=InboundMessage(
                channel=ROUTINE_CHANNEL,
                event_id=event_id(rid, T0 + 2),
                chat_id=rid,
                sender=router.started[0].sender,
                text="say tick",
                addressed=True,
            )
        )
    )
    assert await scheduler.fire(due, clock.now)
    assert len(router.started) == 2  # the one before the crash, not a second
    assert (await ledger.routines.get(rid)).next_fire_at == T0 + 4


async def test_paused_routines_do_not_fire(ledger: Ledger) -> None:
    scheduler, router, clock, rid = await setup(ledger)
    await ledger.routines.set_state(rid, "paused", next_fire_at=None)
    clock.now = T0 + 10
    assert await scheduler.tick() == 0
    assert router.started == []


async def test_config_routines_are_synced_by_name(ledger: Ledger) -> None:
    session = await ledger.sessions.create(agent="script")
    alice, _ = await ledger.users.add("alice", "member")
    mine = await ledger.sessions.create(agent="script", created_by=alice.id)

    def config(**entries: RoutineSpec) -> RoutinesConfig:
        return RoutinesConfig(timezone="Asia/Shanghai", entries=entries)

    clock = Clock(T0)
    spec = RoutineSpec(cron="0 9 * * *", session=session.id, input="say morning")
    s = RoutineScheduler(ledger, Router(ledger), config(morning=spec), clock=clock)  # type: ignore[arg-type]
    await s.sync_config()
    (added,) = await ledger.routines.list()
    assert (added.source, added.owner, added.tz, added.catch_up) == (
        "config",
        "admin",
        "Asia/Shanghai",
        "once",
    )
    assert added.next_fire_at == Schedule("0 9 * * *", "Asia/Shanghai").next_after(T0)
    # unchanged at the next start: its due time stays (what it missed is caught up)
    clock.now = T0 + 5 * 86_400
    await s.sync_config()
    assert (await ledger.routines.get(added.id)).next_fire_at == added.next_fire_at
    # a new schedule is due from now; a new owner's routine must be in their session
    changed = RoutineSpec(cron="0 10 * * *", session=mine.id, input="say ten", owner="alice")
    s.config = config(morning=changed)
    await s.sync_config()
    now_def = await ledger.routines.get(added.id)
    assert (now_def.cron, now_def.owner, now_def.input) == ("0 10 * * *", alice.id, "say ten")
    assert now_def.next_fire_at == Schedule("0 10 * * *", "Asia/Shanghai").next_after(clock.now)
    # gone from the config: removed
    s.config = config()
    await s.sync_config()
    assert await ledger.routines.list() == []


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ({"session": "ses_nothing"}, "no session 'ses_nothing'"),
        ({"owner": "nobody"}, "no user 'nobody'"),
        ({"owner": "alice"}, "is not alice's"),
    ],
)
async def test_a_config_routine_that_does_not_fit_stops_the_start(
    ledger: Ledger, entry: dict[str, str], said: str
) -> None:
    session = await ledger.sessions.create(agent="script")
    await ledger.users.add("alice", "member")
    spec = RoutineSpec(**{"cron": "@daily", "session": session.id, "input": "x", **entry})
    s = RoutineScheduler(ledger, Router(ledger), RoutinesConfig(entries={"r": spec}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=said):
        await s.sync_config()


async def test_a_config_routine_does_not_take_over_one_added_with_the_cli(ledger: Ledger) -> None:
    scheduler, _, _, _ = await setup(ledger)
    session = await ledger.sessions.create(agent="script")
    spec = RoutineSpec(cron="@daily", session=session.id, input="x")
    scheduler.config = RoutinesConfig(entries={"tick": spec})
    with pytest.raises(ConfigError, match="was added with `tether routines add`"):
        await scheduler.sync_config()
