"""Capability tokens: every rejection has its own reason, and valid tokens pass once."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tether.errors import CapabilityDenied, ConfigError
from tether.security.capability import (
    CapabilityIssuer,
    CapabilityVerifier,
    args_digest,
    canonical_args,
    load_or_create_signing_key,
)
from tether.security.credentials import (
    hash_secret,
    new_enrolment_code,
    new_secret,
    normalize_code,
    parse_runner_credential,
    runner_credential,
    verify_secret,
)

ARGS = {"path": "src/a.py", "limit": 10}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock | None = None) -> tuple[CapabilityIssuer, CapabilityVerifier]:
    clock = clock or Clock()
    issuer = CapabilityIssuer(Ed25519PrivateKey.generate(), clock=clock)
    return issuer, CapabilityVerifier(issuer.public_pem, "rnr_a", clock=clock)


def mint(issuer: CapabilityIssuer, **kw: object) -> str:
    claims: dict[str, object] = {
        "runner_id": "rnr_a",
        "call_id": "call_1",
        "tool": "read_file",
        "args": ARGS,
        "workspace": "app",
        "ttl": 30,
    }
    claims.update(kw)
    token, _ = issuer.mint(**claims)  # type: ignore[arg-type]
    return token


def check(verifier: CapabilityVerifier, token: str | None, **kw: object) -> object:
    binding: dict[str, object] = {
        "call_id": "call_1",
        "tool": "read_file",
        "args": ARGS,
        "workspace": "app",
    }
    binding.update(kw)
    return verifier.verify(token, **binding)  # type: ignore[arg-type]


def reason(exc: pytest.ExceptionInfo[CapabilityDenied]) -> str:
    return str(exc.value.data["reason"])


def test_valid_token_once_then_replayed() -> None:
    issuer, verifier = pair()
    token = mint(issuer)
    cap = check(verifier, token)
    assert cap.tool == "read_file"  # type: ignore[attr-defined]
    with pytest.raises(CapabilityDenied) as info:
        check(verifier, token)
    assert reason(info) == "replayed"
    # a re-send of a call the runner already accepted skips expiry and replay, nothing else
    assert check(verifier, token, resend=True)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "missing"),
        ("forged", "bad_signature"),
        ("other_runner", "wrong_audience"),
        ("expired", "expired"),
        ("other_call", "wrong_call"),
        ("other_tool", "wrong_tool"),
        ("other_args", "args_mismatch"),
        ("other_workspace", "wrong_workspace"),
        ("garbage", "malformed"),
        ("hs256", "malformed"),
        ("no_call_claim", "malformed"),
    ],
)
def test_rejections(case: str, expected: str) -> None:
    clock = Clock()
    issuer, verifier = pair(clock)
    token: str | None = mint(issuer)
    binding: dict[str, object] = {}
    if case == "missing":
        token = None
    elif case == "forged":
        token = mint(CapabilityIssuer(Ed25519PrivateKey.generate(), clock=clock))
    elif case == "other_runner":
        token = mint(issuer, runner_id="rnr_b")
    elif case == "expired":
        clock.now += 60
    elif case == "other_call":
        binding["call_id"] = "call_2"
    elif case == "other_tool":
        binding["tool"] = "write_file"
    elif case == "other_args":
        binding["args"] = {**ARGS, "limit": 11}
    elif case == "other_workspace":
        binding["workspace"] = "other"
    elif case == "garbage":
        token = "not.a.token"
    elif case == "hs256":
        token = jwt.encode(
            {"aud": "rnr_a"}, "secret-secret-secret-secret-secret", algorithm="HS256"
        )
    elif case == "no_call_claim":
        raw = jwt.decode(mint(issuer), options={"verify_signature": False})
        del raw["call"]
        token = jwt.encode(raw, issuer._key, algorithm="EdDSA")
    with pytest.raises(CapabilityDenied) as info:
        check(verifier, token, **binding)
    assert reason(info) == expected
    assert info.value.code == "capability_denied"


def test_canonical_args_ignore_key_order() -> None:
    assert canonical_args({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'
    assert args_digest({"a": 1, "b": 2}) == args_digest({"b": 2, "a": 1})


def test_replay_cache_forgets_expired_tokens() -> None:
    clock = Clock()
    issuer, verifier = pair(clock)
    for i in range(3000):
        check(verifier, mint(issuer, call_id=f"c{i}", ttl=5), call_id=f"c{i}")
        clock.now += 0.01
    clock.now += 100
    check(verifier, mint(issuer, call_id="late"), call_id="late")
    assert len(verifier._seen) < 3000


def test_replay_cache_full_fails_closed() -> None:
    clock = Clock()
    issuer = CapabilityIssuer(Ed25519PrivateKey.generate(), clock=clock)
    verifier = CapabilityVerifier(issuer.public_pem, "rnr_a", clock=clock, max_live_tokens=3)
    for i in range(3):
        check(verifier, mint(issuer, call_id=f"c{i}"), call_id=f"c{i}")
    with pytest.raises(CapabilityDenied) as info:
        check(verifier, mint(issuer, call_id="c9"), call_id="c9")
    assert reason(info) == "replay_cache_full"


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.key"
    key = load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_signing_key(path)
    assert CapabilityIssuer(key).public_pem == CapabilityIssuer(again).public_pem
    bad = tmp_path / "bad.key"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    bad.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError):
        load_or_create_signing_key(bad)


def test_credentials_and_codes() -> None:
    secret, stored = new_secret()
    cred = runner_credential("rnr_01ABC", secret)
    assert parse_runner_credential(cred) == ("rnr_01ABC", secret)
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret, None)
    for bad in (
        "",
        "tta_x",
        "ttr_",
        "ttr_rnr.short",
        "ttr_.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ):
        assert parse_runner_credential(bad) is None
    code = new_enrolment_code()
    assert len(code) == 19
    assert hash_secret(normalize_code(code.lower().replace("-", " "))) == hash_secret(
        normalize_code(code)
    )
