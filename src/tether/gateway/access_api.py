"""Handlers of ``user.*``, ``request.*`` and ``policy.*``: people, their requests, the rules."""

from __future__ import annotations

import logging

from tether.gateway.call_gate import CallGate
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.gateway.requests import request_info
from tether.gateway.runs_api import RunsApi
from tether.gateway.server import GatewayServer
from tether.ledger import Ledger, UserRecord
from tether.policy import MODES
from tether.protocol import methods as m
from tether.protocol.access import (
    PolicyExplained,
    PolicyExplainParams,
    PolicyRuleInfo,
    PolicyShowParams,
    PolicyView,
    RequestInfo,
    RequestList,
    RequestListParams,
    RequestResolveParams,
    UserAdded,
    UserAddParams,
    UserInfo,
    UserList,
    UserRevokeParams,
)
from tether.protocol.system import Empty
from tether.transport.connection import CloseCode

__all__ = ["AccessApi", "user_info"]

log = logging.getLogger(__name__)


def user_info(user: UserRecord, links: list[str] | None = None) -> UserInfo:
    return UserInfo(
        id=user.id,
        name=user.name,
        role=user.role,
        status=user.status,
        created_at=user.created_at,
        revoked_at=user.revoked_at,
        links=links or [],
    )


class AccessApi:
    """Users, requests and the effective policy, over RPC."""

    def __init__(
        self,
        ledger: Ledger,
        gate: CallGate,
        runs: RunsApi,
        registry: RunnerRegistry,
        server: GatewayServer,
        default_mode: str,
    ) -> None:
        self.ledger = ledger
        self.gate = gate
        self.runs = runs
        self.registry = registry
        self.server = server
        self.default_mode = default_mode

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.USER_ADD, self.add_user)
        handlers.add(m.USER_LIST, self.list_users)
        handlers.add(m.USER_REVOKE, self.revoke_user)
        handlers.add(m.REQUEST_LIST, self.list_requests)
        handlers.add(m.REQUEST_RESOLVE, self.resolve)
        handlers.add(m.POLICY_SHOW, self.show_policy)
        handlers.add(m.POLICY_EXPLAIN, self.explain)

    # ---- users ---------------------------------------------------------------------

    async def add_user(self, peer: Peer, p: UserAddParams) -> UserAdded:
        user, token = await self.ledger.users.add(p.name, p.role)
        log.info(
            "user added", extra={"user": user.id, "user_name": user.name, "user_role": user.role}
        )
        return UserAdded(user=user_info(user), token=token)

    async def list_users(self, peer: Peer, p: Empty) -> UserList:
        links: dict[str, list[str]] = {}
        for link in await self.ledger.identities.of_user():
            links.setdefault(link.user_id, []).append(f"{link.channel}:{link.external_id}")
        users = await self.ledger.users.list()
        return UserList(users=[user_info(u, links.get(u.id)) for u in users])

    async def revoke_user(self, peer: Peer, p: UserRevokeParams) -> UserInfo:
        user = await self.ledger.users.revoke(p.user)
        closed = 0
        for group in self.server.peers.values():
            for other in list(group):
                if other.principal.id == user.id:
                    other.conn.close_soon(CloseCode.POLICY, "login token revoked")
                    closed += 1
        log.info("user revoked", extra={"user": user.id, "connections_closed": closed})
        return user_info(user)

    # ---- requests ------------------------------------------------------------------

    async def list_requests(self, peer: Peer, p: RequestListParams) -> RequestList:
        # only what the caller may decide: an approver the config names sees requests of
        # runs they cannot read; anyone else gets an empty list, run id known or not
        records = await self.gate.requests.list_for(
            peer.principal, run_id=p.run_id, session_id=p.session_id
        )
        return RequestList(requests=[request_info(r) for r in records])

    async def resolve(self, peer: Peer, p: RequestResolveParams) -> RequestInfo:
        record = await self.gate.requests.resolve(
            peer.principal, p.request, decision=p.decision, answer=p.answer
        )
        return request_info(record)

    # ---- policy --------------------------------------------------------------------

    async def show_policy(self, peer: Peer, p: PolicyShowParams) -> PolicyView:
        mode = self.default_mode
        session_rules = []
        if p.session_id is not None:
            session = await self.runs.session_for(peer, p.session_id)
            mode = session.mode
            session_rules = await self.gate.policy.session_rules(session.id)
        policy = self.gate.policy
        rules = [
            PolicyRuleInfo(decision=d, source=src, rule=text)
            for d, src, text in policy.policy.ordered(session_rules)
        ]
        return PolicyView(
            mode=mode,
            mode_table=dict(MODES[mode]),
            rules=rules,
            approvers=list(policy.config.approvers),
            approval_timeout=policy.config.approval_timeout,
        )

    async def explain(self, peer: Peer, p: PolicyExplainParams) -> PolicyExplained:
        mode, workspace, live = self.default_mode, p.workspace, None
        session_id = None
        if p.session_id is not None:
            session = await self.runs.session_for(peer, p.session_id)
            mode, session_id = session.mode, session.id
            workspace = workspace or session.workspace or ""
            if session.runner_id is not None:
                live = self.registry.get(session.runner_id)
        if live is None:
            live = self._offering(p.tool)
        call = self.gate.policy.describe(
            p.tool, p.args, workspace=workspace, live=live, risk=p.risk
        )
        decided = await self.gate.policy.decide(
            call, session_id=session_id, mode=mode, explain=True
        )
        return PolicyExplained(
            decision=decided.decision,
            source=decided.source,
            rule=decided.rule,
            risk=call.risk,
            mode=mode,
            command=decided.command,
            commands=[PolicyRuleInfo(decision=d, source=c, rule=r) for c, d, r in decided.steps],
            parsed=call.command is None or call.commands is not None,
        )

    def _offering(self, tool: str) -> LiveRunner | None:
        return next((r for r in self.registry.live.values() if tool in r.tools), None)
