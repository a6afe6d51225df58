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


async def test_a_login_link_admits_once_within_its_time_and_only_the_newest_are_kept(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.gateway.auth import ChainAuthenticator
    from tether.gateway.console_http import LINK_PREFIX, ConsoleHttp

    http = ConsoleHttp(
        ConsoleSessions(load_key(tmp_path), ledger),
        ChainAuthenticator([]),
        public_url=None,
        secure_cookie=False,
    )
    link = http.login_link("http://127.0.0.1:1/", local_admin(), ttl=60)
    base, _, key = link.partition("/#token=")
    assert base == "http://127.0.0.1:1"
    assert key.startswith(LINK_PREFIX)
    assert http._redeem(key + "x") is None  # a near miss is no key
    principal = http._redeem(key)
    assert principal is not None
    assert principal.id == "local-admin"
    assert http._redeem(key) is None  # once only

    late = http.login_link("http://h", local_admin(), ttl=60).partition("#token=")[2]
    import time as clock

    now = clock.time()
    monkeypatch.setattr("tether.gateway.console_http.time.time", lambda: now + 61)
    assert http._redeem(late) is None  # out of time
    monkeypatch.undo()

    keys = [http.login_link("http://h", local_admin()).partition("#token=")[2] for _ in range(40)]
    assert http._redeem(keys[0]) is None  # pushed out by newer ones
    assert http._redeem(keys[-1]) is not None
