from tether.config import Limits
from tether.gateway.fd_limit import RESERVED_FDS, TCP_EXTRA, plan


def test_enough_descriptors_keep_the_config() -> None:
    limits = Limits(max_ws_connections=100)
    fitted = plan(limits, 1024, 1024, 1024)
    assert not fitted.lowered
    assert fitted.limits == limits


def test_a_low_hard_limit_lowers_the_caps_to_fit() -> None:
    fitted = plan(Limits(), 1024, 1024, 1024)
    assert fitted.lowered
    used = (
        fitted.limits.max_ws_connections
        + fitted.limits.max_pending_connections
        + fitted.limits.max_ipc_connections
        + TCP_EXTRA
        + RESERVED_FDS
    )
    assert used <= 1024
    assert fitted.limits.max_ws_connections >= 256
    assert fitted.max_tcp < 1024 - RESERVED_FDS
