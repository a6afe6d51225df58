import pytest

from tether.errors import (
    Forbidden,
    InternalError,
    TetherError,
    UnsupportedVersion,
    error_class_for,
)
from tether.protocol.codes import CODES, error_from_wire
from tether.protocol.handshake import negotiate


def test_negotiate_picks_highest_common() -> None:
    assert negotiate([1, 2, 3], [1, 2]) == 2
    assert negotiate([1]) == 1
    with pytest.raises(UnsupportedVersion) as info:
        negotiate([7, 8], [1, 2])
    assert info.value.data == {"supported": [1, 2]}


def test_every_error_class_has_one_wire_code() -> None:
    codes = list(CODES.values())
    assert len(codes) == len(set(codes)), "numeric codes must be unique"
    for code in CODES:
        assert error_class_for(code).code == code
    assert error_class_for("no-such") is InternalError


def test_every_error_class_is_in_the_code_table() -> None:
    def subclasses(cls: type[TetherError]) -> set[type[TetherError]]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    for cls in subclasses(TetherError):
        assert cls.code in CODES, f"{cls.__name__} ({cls.code}) has no wire code"
        assert error_class_for(cls.code).code == cls.code


def test_error_from_wire_rebuilds_the_class() -> None:
    err = error_from_wire("nope", {"code": "forbidden", "method": "x"})
    assert isinstance(err, Forbidden)
    assert err.data == {"method": "x"}


def test_design_error_codes_are_all_on_the_wire() -> None:
    design = {"unauthorized", "forbidden", "not_found", "invalid_params", "conflict"}
    design |= {"runner_offline", "capability_denied", "policy_denied", "approval_denied"}
    design |= {"tool_timeout", "tool_failed", "rate_limited", "overloaded", "too_large", "internal"}
    assert design <= set(CODES)
