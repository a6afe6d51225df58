"""Authentication: the admin token file, runner credentials in the ledger, and the chain.

Every source fails closed: an empty, unknown, malformed or revoked token is no principal.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tether.gateway.auth import (
    ADMIN_TOKEN_FILE,
    AdminTokenAuthenticator,
    ChainAuthenticator,
    Principal,
    RunnerAuthenticator,
    UserAuthenticator,
    ensure_admin_token,
    local_admin,
)
from tether.ledger import Ledger
from tether.security.credentials import hash_secret, new_secret, runner_credential
from tether.types import Role

ADMIN = frozenset({Role.ADMIN, Role.CLIENT})


async def enrolled_runner(ledger: Ledger, name: str = "box") -> tuple[str, str]:
    """Add and enrol a runner; return its id and its credential."""
    code_hash = hash_secret(f"code-{name}")
    await ledger.runners.add(name, code_hash=code_hash, expires_at=time.time() + 600)
    secret, secret_hash = new_secret()
    record = await ledger.runners.enroll(code_hash, secret_hash)
    assert record is not None
    return record.id, runner_credential(record.id, secret)


def write_token(path: Path, token: str, *, mtime_ns: int | None = None) -> None:
    path.write_text(token + "\n", encoding="utf-8")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


# ---- the admin token file ---------------------------------------------------------------


def test_ensure_admin_token_creates_a_private_token_once(tmp_path: Path) -> None:
    path, created = ensure_admin_token(tmp_path)
    assert (path, created) == (tmp_path / ADMIN_TOKEN_FILE, True)
    token = path.read_text(encoding="utf-8").strip()
    assert token.startswith("tta_")
    assert len(token) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = ensure_admin_token(tmp_path)
    assert (again, created) == (path, False)
    assert path.read_text(encoding="utf-8").strip() == token  # kept, not replaced


def test_ensure_admin_token_tightens_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    write_token(path, "tta_existing")
    path.chmod(0o644)
    _, created = ensure_admin_token(tmp_path)
    assert not created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").strip() == "tta_existing"


async def test_the_admin_token_is_the_admin(tmp_path: Path) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    write_token(path, "tta_right")
    auth = AdminTokenAuthenticator(path)
    assert await auth.authenticate("tta_right") == Principal(
        "admin", ADMIN, user_role="owner", name="admin"
    )
    for wrong in ("tta_wrong", "tta_righ", "tta_right2", " tta_right", "TTA_RIGHT", ""):
        assert await auth.authenticate(wrong) is None, wrong


async def test_the_admin_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    write_token(path, "tta_first")
    auth = AdminTokenAuthenticator(path)
    assert await auth.authenticate("tta_first") is not None
    before = path.stat().st_mtime_ns
    write_token(path, "tta_second", mtime_ns=before + 1_000_000_000)  # rotated a second later
    assert await auth.authenticate("tta_second") is not None
    assert await auth.authenticate("tta_first") is None  # the old one stops working


async def test_a_missing_admin_token_file_admits_nobody_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    auth = AdminTokenAuthenticator(path)
    assert await auth.authenticate("tta_any") is None
    write_token(path, "tta_back")
    assert await auth.authenticate("tta_back") is not None
    path.unlink()
    assert await auth.authenticate("tta_back") is None  # deleting the file revokes it at once


@pytest.mark.parametrize("content", ["", "\n", "   \n\t"])
async def test_an_empty_admin_token_file_admits_nobody(tmp_path: Path, content: str) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    path.write_text(content, encoding="utf-8")
    auth = AdminTokenAuthenticator(path)
    for token in ("", " ", "\n", "tta_"):
        assert await auth.authenticate(token) is None, repr(token)


async def test_a_rotated_admin_token_is_noticed_even_with_the_same_mtime(
    tmp_path: Path,
) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    write_token(path, "tta_leaked")
    auth = AdminTokenAuthenticator(path)
    assert await auth.authenticate("tta_leaked") is not None
    write_token(path, "tta_fresh", mtime_ns=path.stat().st_mtime_ns)
    assert await auth.authenticate("tta_leaked") is None
    assert await auth.authenticate("tta_fresh") is not None


async def test_a_corrupt_admin_token_file_refuses_the_admin_but_not_the_runners(
    tmp_path: Path, ledger: Ledger
) -> None:
    path = tmp_path / ADMIN_TOKEN_FILE
    path.write_bytes(b"tta_\xff\xfe\x00garbage\n")
    _, credential = await enrolled_runner(ledger)
    admin = AdminTokenAuthenticator(path)
    chain = ChainAuthenticator([admin, RunnerAuthenticator(ledger)])
    assert await admin.authenticate("tta_anything") is None
    principal = await chain.authenticate(credential)
    assert principal is not None
    assert principal.roles == {Role.RUNNER}


def test_the_local_admin_may_be_admin_or_client() -> None:
    assert local_admin() == Principal("local-admin", ADMIN, user_role="owner", name="local-admin")


# ---- runner credentials -----------------------------------------------------------------


async def test_an_enrolled_runner_is_a_runner_principal(ledger: Ledger) -> None:
    runner_id, credential = await enrolled_runner(ledger, "box")
    principal = await RunnerAuthenticator(ledger).authenticate(credential)
    assert principal == Principal("runner:box", frozenset({Role.RUNNER}), runner_id=runner_id)


async def test_a_wrong_secret_for_a_real_runner_is_refused(ledger: Ledger) -> None:
    runner_id, credential = await enrolled_runner(ledger)
    other, _ = new_secret()
    assert (
        await RunnerAuthenticator(ledger).authenticate(runner_credential(runner_id, other)) is None
    )
    _, someone_else = await enrolled_runner(ledger, "other")
    forged = runner_credential(runner_id, someone_else.rsplit(".", 1)[1])  # another's secret
    assert await RunnerAuthenticator(ledger).authenticate(forged) is None
    assert await RunnerAuthenticator(ledger).authenticate(credential) is not None


async def test_malformed_runner_credentials_are_refused(ledger: Ledger) -> None:
    runner_id, credential = await enrolled_runner(ledger)
    auth = RunnerAuthenticator(ledger)
    for token in (
        "",
        "ttr_",
        f"ttr_{runner_id}",
        f"ttr_{runner_id}.",
        credential[:-1],  # a secret one character short
        credential + "x",
        " " + credential,
        credential.replace("ttr_", "tta_", 1),
        credential.split(".", 1)[1],  # the secret alone
        f"ttr_{runner_id.lower()}.{credential.rsplit('.', 1)[1]}",
    ):
        assert await auth.authenticate(token) is None, token


async def test_a_well_formed_credential_of_no_runner_is_refused(ledger: Ledger) -> None:
    secret, _ = new_secret()
    unknown = runner_credential("rnr_0123456789ABCDEFGHJKMNPQRS", secret)
    assert await RunnerAuthenticator(ledger).authenticate(unknown) is None


async def test_a_revoked_runner_is_refused(ledger: Ledger) -> None:
    _, credential = await enrolled_runner(ledger, "box")
    auth = RunnerAuthenticator(ledger)
    assert await auth.authenticate(credential) is not None
    await ledger.runners.revoke("box")
    assert await auth.authenticate(credential) is None


async def test_a_runner_enrolled_again_refuses_its_old_credential(ledger: Ledger) -> None:
    _, old = await enrolled_runner(ledger, "box")
    await ledger.runners.add(
        "box", code_hash=hash_secret("new-code"), expires_at=time.time() + 600, rotate=True
    )
    auth = RunnerAuthenticator(ledger)
    assert await auth.authenticate(old) is None  # pending again: nothing is accepted
    secret, secret_hash = new_secret()
    record = await ledger.runners.enroll(hash_secret("new-code"), secret_hash)
    assert record is not None
    assert await auth.authenticate(old) is None
    assert await auth.authenticate(runner_credential(record.id, secret)) is not None


# ---- the chain --------------------------------------------------------------------------


class Source:
    """An authenticator that knows some tokens and records what it was asked."""

    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known
        self.asked: list[str] = []

    async def authenticate(self, token: str) -> Principal | None:
        self.asked.append(token)
        return self.known.get(token)


async def test_the_chain_asks_in_order_and_the_first_that_knows_wins() -> None:
    a = Source({"both": Principal("a", ADMIN)})
    b = Source({"both": Principal("b", ADMIN), "only-b": Principal("b", ADMIN)})
    chain = ChainAuthenticator([a, b])
    assert (await chain.authenticate("both")) == Principal("a", ADMIN)
    assert b.asked == []  # not asked once the first knew it
    assert (await chain.authenticate("only-b")) == Principal("b", ADMIN)
    assert (a.asked, b.asked) == (["both", "only-b"], ["only-b"])
    assert await chain.authenticate("nobody") is None
    assert (a.asked[-1], b.asked[-1]) == ("nobody", "nobody")


async def test_the_chain_refuses_an_empty_token_without_asking() -> None:
    lenient = Source({"": Principal("anyone", ADMIN)})
    chain = ChainAuthenticator([lenient])
    assert await chain.authenticate("") is None
    assert lenient.asked == []


async def test_the_chain_with_no_sources_admits_nobody() -> None:
    assert await ChainAuthenticator([]).authenticate("tta_x") is None


async def test_the_real_chain_tells_the_admin_from_a_runner(tmp_path: Path, ledger: Ledger) -> None:
    path, _ = ensure_admin_token(tmp_path)
    admin_token = path.read_text(encoding="utf-8").strip()
    runner_id, credential = await enrolled_runner(ledger)
    chain = ChainAuthenticator([AdminTokenAuthenticator(path), RunnerAuthenticator(ledger)])
    admin = await chain.authenticate(admin_token)
    runner = await chain.authenticate(credential)
    assert admin is not None
    assert runner is not None
    assert (admin.roles, admin.runner_id) == (ADMIN, None)
    assert (runner.roles, runner.runner_id) == (frozenset({Role.RUNNER}), runner_id)
    assert await chain.authenticate(admin_token + credential) is None


async def test_login_tokens_name_active_users_only(ledger: Ledger) -> None:
    auth = UserAuthenticator(ledger)
    user, token = await ledger.users.add("alice", "member")
    owner, owner_token = await ledger.users.add("olga", "owner")
    assert await auth.authenticate(token) == Principal(
        user.id, frozenset({Role.CLIENT}), user_role="member", name="alice"
    )
    seen = await auth.authenticate(owner_token)
    assert seen is not None
    assert (seen.roles, seen.user_role, seen.is_owner) == (ADMIN, "owner", True)
    prefix, _, secret = token.partition(".")
    for bad in (
        "",
        prefix,
        f"{prefix}.{secret[:-1]}",
        f"{prefix}.{secret}x",
        f"{prefix}.{'A' * len(secret)}",
        token.replace(user.id, owner.id),  # another user's id with this secret
        " " + token,
        runner_credential("rnr_" + user.id[4:], secret),
    ):
        assert await auth.authenticate(bad) is None, bad
    await ledger.users.revoke("alice")
    assert await auth.authenticate(token) is None
