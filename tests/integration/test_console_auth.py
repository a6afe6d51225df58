"""The web console's login, session cookie, CSRF token and origin rule, through a real
gateway: what a browser does, and what a hostile page or a forged cookie cannot."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest

from tests.support.people import add_user
from tests.support.process import GatewayProcess, RunnerProcess, run_cli

COOKIE = "tether_console"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def login(
    http: aiohttp.ClientSession, gw: GatewayProcess, token: str, **headers: str
) -> tuple[int, dict[str, Any], SimpleCookie]:
    headers = {"Origin": gw.url, **headers}
    async with http.post(f"{gw.url}/console/login", json={"token": token}, headers=headers) as r:
        cookie: SimpleCookie = SimpleCookie()
        for value in r.headers.getall("Set-Cookie", []):
            cookie.load(value)
        assert r.headers.get("Cache-Control") == "no-store"
        return r.status, await r.json(), cookie


def cookie_header(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def hello_over_cookie(gw: GatewayProcess, value: str, origin: str | None) -> int | str:
    """Open the gateway's WebSocket as a browser would (a cookie, an Origin, no bearer):
    the HTTP status of a refusal, else the principal ``hello`` names."""
    headers = cookie_header(value)
    if origin is not None:
        headers["Origin"] = origin
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(gw.ws_url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        async with ws:
            await ws.send_str(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "hello",
                        "params": {"protocol": [1], "role": "client"},
                    }
                )
            )
            reply = json.loads((await ws.receive()).data)
            return str(reply["result"]["principal"])


async def test_a_person_logs_in_once_and_the_browser_holds_only_a_strict_httponly_cookie(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    token = await add_user(gateway, "alice")
    status, body, cookie = await login(http, gateway, token)
    assert status == 200, body
    assert (body["name"], body["role"]) == ("alice", "member")
    assert body["csrf"]
    morsel = cookie[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert token not in morsel.value  # the token is not what the browser keeps
    # a reload: who am I, from the cookie alone
    async with http.get(
        f"{gateway.url}/console/session",
        headers={"Origin": gateway.url, **cookie_header(morsel.value)},
    ) as r:
        assert r.status == 200
        again = await r.json()
    assert (again["principal"], again["csrf"]) == (body["principal"], body["csrf"])
    # the live stream: the WebSocket takes the cookie, from the gateway's own origin only
    assert await hello_over_cookie(gateway, morsel.value, gateway.url) == body["principal"]
    assert await hello_over_cookie(gateway, morsel.value, "http://evil.example") == 401
    assert await hello_over_cookie(gateway, morsel.value, None) == 401
    # the owner's admin token logs in as the owner
    status, owner, _ = await login(http, gateway, gateway.admin_token)
    assert (status, owner["role"]) == (200, "owner")


@pytest.mark.parametrize(
    ("token", "headers", "status"),
    [
        ("ttu_nobody.nothing", {}, 401),
        ("", {}, 401),
        ("{alice}", {"Origin": "http://evil.example"}, 403),  # login CSRF from another site
        ("{alice}", {"Origin": "null"}, 403),  # a sandboxed frame
    ],
)
async def test_a_login_is_refused_for_a_wrong_token_or_another_origin(
    gateway: GatewayProcess,
    http: aiohttp.ClientSession,
    token: str,
    headers: dict[str, str],
    status: int,
) -> None:
    alice = await add_user(gateway, "alice")
    got, body, cookie = await login(http, gateway, token.replace("{alice}", alice), **headers)
    assert got == status, body
    assert COOKIE not in cookie


async def test_login_takes_only_a_small_json_body_and_no_origin_is_no_login(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    alice = await add_user(gateway, "alice")
    url = f"{gateway.url}/console/login"
    async with http.post(url, data=f"token={alice}", headers={"Origin": gateway.url}) as r:
        assert r.status == 400  # a form post (what a cross-site form could send)
    async with http.post(url, json={"token": "x" * 10_000}, headers={"Origin": gateway.url}) as r:
        assert r.status == 400
    async with http.post(url, json={"token": alice}) as r:
        assert r.status == 403  # no Origin: not a browser on this origin
    async with http.get(f"{gateway.url}/console/login?token={alice}") as r:
        assert r.status in (404, 405)  # never in a URL


async def test_a_forged_or_tampered_cookie_admits_nobody(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    alice = await add_user(gateway, "alice")
    _, _, cookie = await login(http, gateway, alice)
    value = cookie[COOKIE].value
    version, payload, signature = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["p"] = "local-admin"  # claim to be the owner
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (
        f"{version}.{forged}.{signature}",
        f"{version}.{payload}.{signature[:-2]}xx",
        f"v0.{payload}.{signature}",
        "garbage",
        value + "." * 2000,
    ):
        async with http.get(
            f"{gateway.url}/console/session", headers={"Origin": gateway.url, **cookie_header(bad)}
        ) as r:
            assert r.status == 401, bad
        assert await hello_over_cookie(gateway, bad, gateway.url) == 401


async def test_logout_needs_the_csrf_token_and_a_revoked_person_is_out_at_once(
    make_gateway: Any, http: aiohttp.ClientSession
) -> None:
    gw = make_gateway()
    alice = await add_user(gw, "alice")
    _, body, cookie = await login(http, gw, alice)
    value = cookie[COOKIE].value
    base = {"Origin": gw.url, **cookie_header(value)}
    async with http.post(f"{gw.url}/console/logout", headers=base) as r:
        assert r.status == 403  # no CSRF token
    async with http.post(f"{gw.url}/console/logout", headers={**base, "X-CSRF-Token": "x"}) as r:
        assert r.status == 403
    async with http.post(
        f"{gw.url}/console/logout", headers={**base, "X-CSRF-Token": body["csrf"]}
    ) as r:
        assert r.status == 200
        cleared: SimpleCookie = SimpleCookie()
        cleared.load(r.headers["Set-Cookie"])
        assert cleared[COOKIE].value == ""
    # revoking the person ends every browser session of theirs, cookie or not
    assert run_cli(gw.home, "users", "revoke", "alice").returncode == 0
    async with http.get(f"{gw.url}/console/session", headers=base) as r:
        assert r.status == 401
    assert await hello_over_cookie(gw, value, gw.url) == 401


async def test_a_runner_credential_never_logs_in_to_the_console(
    make_gateway: Any, make_runner: Any, http: aiohttp.ClientSession
) -> None:
    gw = make_gateway()
    runner: RunnerProcess = make_runner(gw, start=False)
    credential = json.loads((runner.config_dir / "runner.json").read_text())["credential"]
    status, _, cookie = await login(http, gw, credential)
    assert status == 401
    assert COOKIE not in cookie


@pytest.mark.parametrize(
    ("method", "path", "site", "expected"),
    [
        ("GET", "/console/session", "same-origin", 200),  # a browser's own same-origin GET
        ("GET", "/console/session", "same-site", 403),  # a sibling subdomain's page
        ("GET", "/console/session", "cross-site", 403),
        ("GET", "/console/session", None, 403),  # neither header: not a browser here
        ("POST", "/console/logout", "same-origin", 403),  # a POST always needs Origin
    ],
)
async def test_without_origin_only_a_same_origin_get_passes_on_sec_fetch_site(
    gateway: GatewayProcess,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    site: str | None,
    expected: int,
) -> None:
    alice = await add_user(gateway, "alice")
    _, body, cookie = await login(http, gateway, alice)
    headers = {**cookie_header(cookie[COOKIE].value), "X-CSRF-Token": body["csrf"]}
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    async with http.request(method, f"{gateway.url}{path}", headers=headers) as r:
        assert r.status == expected


async def test_markdown_is_rendered_safe_only_for_a_logged_in_page_with_its_csrf_token(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    alice = await add_user(gateway, "alice")
    _, body, cookie = await login(http, gateway, alice)
    base = {"Origin": gateway.url, **cookie_header(cookie[COOKIE].value)}
    url = f"{gateway.url}/console/markdown"
    texts = ["**hi** <script>alert(1)</script>", "[x](javascript:alert(1)) <img src=x onerror=y>"]
    async with http.post(url, json={"texts": texts}, headers=base) as r:
        assert r.status == 403  # no CSRF token
    async with http.post(
        url, json={"texts": texts}, headers={**base, "Origin": "http://evil.test"}
    ) as r:
        assert r.status == 403
    async with http.post(url, json={"texts": texts}, headers={"Origin": gateway.url}) as r:
        assert r.status == 401  # no cookie
    good = {**base, "X-CSRF-Token": body["csrf"]}
    async with http.post(url, json={"texts": texts}, headers=good) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        html = (await r.json())["html"]
    assert html[0].startswith("<p><strong>hi</strong> &lt;script&gt;")
    assert "<script" not in "".join(html)
    assert "<img" not in "".join(html)
    assert "href" not in html[1]  # a javascript: link is no link
    async with http.post(url, json={"texts": ["x"] * 501}, headers=good) as r:
        assert r.status == 413
    async with http.post(url, json={"texts": [1]}, headers=good) as r:
        assert r.status == 400
    async with http.post(
        url, data=b"x" * (5 * 1024 * 1024), headers={**good, "Content-Type": "application/json"}
    ) as r:
        assert r.status == 413


async def test_the_console_words_say_what_the_chats_say(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        f"{gateway.url}/console/words", headers={"Sec-Fetch-Site": "same-origin"}
    ) as r:
        assert r.status == 200
        words = await r.json()
    assert words["explained"]["approval_denied"]["en"] == "it was denied, so nothing ran"
    assert words["decisions"]["allow_once"]["zh"] == "已批准一次"
    assert "approve" in words["commands"]
    async with http.get(
        f"{gateway.url}/console/words", headers={"Sec-Fetch-Site": "cross-site"}
    ) as r:
        assert r.status == 403
