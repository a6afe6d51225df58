"""Console cookies: signed, expiring, tied to a person who is still there; the key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.gateway.auth import local_admin
from tether.gateway.console_session import KEY_FILE, ConsoleSessions, load_key
from tether.ledger import Ledger


async def test_a_cookie_lasts_its_ttl_and_its_csrf_token_is_its_own(
    ledger: Ledger, tmp_path: Path
) -> None:
    sessions = ConsoleSessions(load_key(tmp_path), ledger, ttl=60)
    value, session = sessions.issue(local_admin(), now=1000.0)
    checked = await sessions.check(value, now=1059.0)
    assert checked is not None
    assert checked.principal.id == "local-admin"
    assert checked.csrf == session.csrf
    assert await sessions.check(value, now=1060.0) is None  # expired
    other, second = sessions.issue(local_admin(), now=1000.0)
    assert second.csrf != session.csrf  # each login its own token
    assert ConsoleSessions.csrf_ok(session, session.csrf)
    assert not ConsoleSessions.csrf_ok(session, second.csrf)
    assert not ConsoleSessions.csrf_ok(session, None)
    assert not ConsoleSessions.csrf_ok(session, "")
    # another key (rotated): every cookie is void
    rotated = ConsoleSessions(b"k" * 48, ledger, ttl=60)
    assert await rotated.check(other, now=1001.0) is None


async def test_a_cookie_of_a_user_who_is_gone_or_revoked_admits_nobody(
    ledger: Ledger, tmp_path: Path
) -> None:
    from tether.gateway.auth import user_principal

    user, _ = await ledger.users.add("alice", "member")
    sessions = ConsoleSessions(load_key(tmp_path), ledger)
    value, _ = sessions.issue(user_principal(user))
    found = await sessions.check(value)
    assert found is not None
    assert found.principal.user_role == "member"
    await ledger.users.revoke(user.id)
    assert await sessions.check(value) is None


def test_the_key_file_is_private_made_once_and_a_short_key_refused(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path) == key
    path.chmod(0o644)
    assert load_key(tmp_path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"short\n")
    with pytest.raises(ConfigError, match="too short"):
        load_key(tmp_path)
