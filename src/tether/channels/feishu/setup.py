"""What ``tether feishu setup`` checks against Feishu's open API: the app's credentials,
its bot, the permissions (scopes) it was granted and, in long-connection mode, that
Feishu hands it a long-connection endpoint.

Event subscriptions cannot be read through the API: :data:`EVENTS` is printed for the
person to compare with the developer console.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import aiohttp

__all__ = ["EVENTS", "SCOPES", "Check", "Report", "Scope", "check_app"]


@dataclass(frozen=True)
class Scope:
    """A permission the app needs; granted when any name in ``names`` is."""

    names: tuple[str, ...]
    why: str
    required: bool = True


SCOPES = (
    Scope(("im:message:send_as_bot", "im:message"), "send replies as the app"),
    Scope(("im:message.p2p_msg:readonly", "im:message"), "read messages sent to the bot"),
    Scope(
        ("im:message.group_at_msg:readonly", "im:message"),
        "read group messages that @-mention the bot",
    ),
    Scope(
        ("im:message:readonly", "im:message"),
        "read the message a message replies to (kept as context)",
        required=False,
    ),
    Scope(("contact:user.base:readonly",), "show the agent who wrote in a group", required=False),
)
GROUP_ALL = Scope(("im:message.group_msg",), 'read every group message (group_trigger = "all")')

STREAMING = Scope(
    ("cardkit:card:write",), "stream replies into a card (streaming = true)", required=True
)

EVENTS = (
    ("im.message.receive_v1", "messages sent to the bot (required)"),
    ("card.action.trigger", "clicks on approval and question cards (a callback)"),
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    missing: list[Scope] = field(default_factory=list)
    bot_name: str = ""

    @property
    def ok(self) -> bool:
        """Every check passed and no required scope is missing."""
        return all(c.ok for c in self.checks) and not any(s.required for s in self.missing)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bot": self.bot_name,
            "checks": [asdict(c) for c in self.checks],
            "missing_scopes": [
                {"scope": s.names[0], "why": s.why, "required": s.required} for s in self.missing
            ],
            "events": [{"event": e, "why": why} for e, why in EVENTS],
        }


async def check_app(
    app_id: str,
    secret: str,
    *,
    base_url: str,
    mode: Literal["long_connection", "webhook"],
    group_trigger: Literal["mention", "all"] = "mention",
    streaming: bool = False,
    timeout: float = 10.0,
) -> Report:
    """Check the app step by step; a failed step stops the ones that depend on it."""
    report = Report()
    limit = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limit, trust_env=False) as http:
        token = await _token(http, base_url, app_id, secret, report)
        if token is None:
            return report
        await _bot(http, base_url, token, report)
        await _scopes(http, base_url, token, group_trigger, streaming, report)
        if mode == "long_connection":
            await _long_connection(http, base_url, app_id, secret, report)
    return report


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = json.loads(await response.read() or b"{}")
    except ValueError:
        return {"code": -1, "msg": f"HTTP {response.status}, a body that is not JSON"}
    return body if isinstance(body, dict) else {"code": -1, "msg": "a body that is not an object"}


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, report: Report, name: str, **kw: Any
) -> dict[str, Any] | None:
    try:
        async with http.request(method, url, **kw) as response:
            return await _json(response)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        report.checks.append(Check(name, False, f"cannot reach {url}: {type(exc).__name__} {exc}"))
        return None


async def _token(
    http: aiohttp.ClientSession, base: str, app_id: str, secret: str, report: Report
) -> str | None:
    url = f"{base}/open-apis/auth/v3/tenant_access_token/internal"
    body = await _call(
        http, "POST", url, report, "credentials", json={"app_id": app_id, "app_secret": secret}
    )
    if body is None:
        return None
    token = body.get("tenant_access_token")
    if body.get("code") != 0 or not token:
        why = f"Feishu refused them ({body.get('code')}): {body.get('msg', '')}"
        report.checks.append(Check("credentials", False, why + " — check the app id and secret"))
        return None
    report.checks.append(Check("credentials", True, "the app id and secret are valid"))
    return str(token)


async def _bot(http: aiohttp.ClientSession, base: str, token: str, report: Report) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    body = await _call(http, "GET", f"{base}/open-apis/bot/v3/info", report, "bot", headers=headers)
    if body is None:
        return
    bot = body.get("bot") or {}
    if body.get("code") != 0 or not bot.get("open_id"):
        why = f"({body.get('code')}) {body.get('msg', '')}: enable the app's Bot capability"
        report.checks.append(Check("bot", False, why))
        return
    report.bot_name = str(bot.get("app_name") or "")
    report.checks.append(Check("bot", True, f"the bot {report.bot_name!r} is enabled"))


async def _scopes(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    group_trigger: str,
    streaming: bool,
    report: Report,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base}/open-apis/application/v6/scopes"
    body = await _call(http, "GET", url, report, "permissions", headers=headers)
    if body is None:
        return
    if body.get("code") != 0:
        why = f"not read ({body.get('code')}): {body.get('msg', '')}; is the app installed?"
        report.checks.append(Check("permissions", False, why))
        return
    granted = {
        str(s.get("scope_name"))
        for s in (body.get("data") or {}).get("scopes") or []
        if isinstance(s, dict) and s.get("grant_status") == 1
    }
    wanted = [
        *SCOPES,
        *([GROUP_ALL] if group_trigger == "all" else []),
        *([STREAMING] if streaming else []),
    ]
    report.missing = [s for s in wanted if not granted.intersection(s.names)]
    required = [s for s in report.missing if s.required]
    detail = (
        f"missing: {', '.join(s.names[0] for s in required)}"
        if required
        else "every permission tether needs is granted"
    )
    report.checks.append(Check("permissions", not required, detail))


async def _long_connection(
    http: aiohttp.ClientSession, base: str, app_id: str, secret: str, report: Report
) -> None:
    url = f"{base}/callback/ws/endpoint"
    body = await _call(
        http, "POST", url, report, "long connection", json={"AppID": app_id, "AppSecret": secret}
    )
    if body is None:
        return
    if body.get("code") != 0 or not (body.get("data") or {}).get("URL"):
        why = (
            f"refused ({body.get('code')}): {body.get('msg', '')}; in Events & Callbacks choose "
            '"Receive events through persistent connection"'
        )
        report.checks.append(Check("long connection", False, why))
        return
    report.checks.append(Check("long connection", True, "Feishu offers the app a long connection"))
