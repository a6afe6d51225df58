"""Feishu's send limits: per chat and per app, kept by pacing."""

from __future__ import annotations

from tether.channels.feishu.limits import SendPacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sends_in_a_second(pacer: SendPacer, clock: Clock, chats: list[str]) -> int:
    """Sends made within one second of the first, if each waits as told."""
    times = [clock.now + pacer.delay(chat) for chat in chats]
    return sum(1 for t in times if t < times[0] + 1.0)


def test_one_chat_gets_at_most_its_rate_however_fast_it_is_asked() -> None:
    clock = Clock()
    pacer = SendPacer(per_chat=4, per_app=40, clock=clock)
    assert sends_in_a_second(pacer, clock, ["oc_1"] * 20) <= 5  # Feishu's limit is 5/s
    assert pacer.delay("oc_quiet") > 0  # (the app's slots are taken by now)
    assert SendPacer(per_chat=4, clock=clock).delay("oc_2") == 0.0  # a quiet app sends at once


def test_many_chats_share_the_apps_rate() -> None:
    clock = Clock()
    pacer = SendPacer(per_chat=4, per_app=40, clock=clock)
    chats = [f"oc_{i}" for i in range(200)]
    assert sends_in_a_second(pacer, clock, chats) <= 50  # the app's limit is 50/s


def test_a_chat_that_waited_long_enough_sends_at_once() -> None:
    clock = Clock()
    pacer = SendPacer(per_chat=4, clock=clock)
    for _ in range(5):
        pacer.delay("oc_1")
    clock.now += 10
    assert pacer.delay("oc_1") == 0.0


def test_chats_kept_are_bounded() -> None:
    clock = Clock()
    pacer = SendPacer(clock=clock, max_chats=3)
    for i in range(10):
        pacer.delay(f"oc_{i}")
    assert list(pacer.chats) == ["oc_7", "oc_8", "oc_9"]


def test_the_window_never_lets_more_calls_start_in_a_second_than_its_limit() -> None:
    import threading

    from tether.channels.feishu.limits import Window

    clock = [0.0]
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock[0] += seconds

    window = Window(5, clock=lambda: clock[0], sleep=sleep)
    started = []
    for _ in range(23):  # a backlog, all at once
        window.enter()
        started.append(clock[0])
    for i, at in enumerate(started):
        assert sum(1 for t in started[i:] if t - at < 1.0) <= 5
    assert started[-1] >= 4.0  # 23 calls at 5 a second
