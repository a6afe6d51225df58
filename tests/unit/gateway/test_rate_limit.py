from tether.gateway.rate_limit import KeyedLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == 0.5
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 100
    assert [bucket.take() for _ in range(4)][-1] > 0  # refilled to the burst, no further


def test_per_source_and_total_limits() -> None:
    clock = Clock()
    limiter = KeyedLimiter(rate=1.0, burst=2, total_rate=1.0, total_burst=3, clock=clock)
    assert limiter.take("a") is None
    assert limiter.take("a") is None
    refused = limiter.take("a")
    assert refused is not None
    assert refused[0] == "source"
    assert limiter.take("b") is None  # the total's third token
    total = limiter.take("c")
    assert total is not None
    assert total[0] == "total"
    clock.now += 1.0
    assert limiter.take("c") is None


def test_sources_are_bounded() -> None:
    limiter = KeyedLimiter(rate=1, burst=1, total_rate=1000, total_burst=1000, max_keys=10)
    for i in range(100):
        limiter.take(f"10.0.0.{i}")
    assert len(limiter._buckets) == 10
