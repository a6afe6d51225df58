import pytest

from tether.gateway.metrics_access import MetricsAccess


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
def test_loopback_is_let_in_without_a_token(remote: str) -> None:
    assert MetricsAccess(["127.0.0.0/8", "::1/128"], None).decide(remote, "") == "ok"


@pytest.mark.parametrize("remote", ["10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1", None, "x"])
def test_others_need_the_token(remote: str | None) -> None:
    open_ = MetricsAccess(["127.0.0.0/8", "::1/128"], None)
    assert open_.decide(remote, "Bearer anything") == "forbidden"
    guarded = MetricsAccess(["127.0.0.0/8"], "s3cret-s3cret-s3cret")
    assert guarded.decide(remote, "") == "unauthorized"
    assert guarded.decide(remote, "Bearer wrong") == "unauthorized"
    assert guarded.decide(remote, "Bearer s3cret-s3cret-s3cret") == "ok"
