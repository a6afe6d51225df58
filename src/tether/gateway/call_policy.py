"""Policy as the gateway applies it: config rules and the deny list, plus each session's
"allow for this session" rules from the ledger, read on every call (so a rule another
gateway added counts at once)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from tether.config import PolicyConfig, RuleSpec
from tether.gateway.registry import LiveRunner
from tether.ledger import Ledger
from tether.policy import Call, Decision, Policy, Rule, describe_call, session_rules_for

__all__ = ["CallPolicy"]

log = logging.getLogger(__name__)

_RULE = msgspec.json.Decoder(RuleSpec)


class CallPolicy:
    """Decides tool calls for runs and for direct calls. See the module docstring."""

    def __init__(self, ledger: Ledger, config: PolicyConfig) -> None:
        self.ledger = ledger
        self.config = config
        self.policy = Policy(config)

    @staticmethod
    def describe(
        tool: str,
        args: Mapping[str, Any],
        *,
        workspace: str,
        live: LiveRunner | None,
        risk: str | None = None,
    ) -> Call:
        """The policy view of a call, with the tool's risk class and path parameters as
        the runner advertises them (unknown: ``exec``, no paths)."""
        info = live.tools.get(tool) if live is not None else None
        return describe_call(
            tool,
            args,
            workspace=workspace,
            risk=info.risk if info is not None else risk,
            path_params=info.path_params if info is not None else (),
        )

    async def session_rules(self, session_id: str | None) -> list[Rule]:
        if session_id is None:
            return []
        specs = []
        for text in await self.ledger.sessions.rules(session_id):
            try:
                specs.append(_RULE.decode(text))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning(
                    "! a stored session rule is unreadable; ignoring it",
                    extra={"session_id": session_id, "error": str(exc)},
                )
        return Policy.session_rules(specs)

    async def decide(
        self, call: Call, *, session_id: str | None, mode: str, explain: bool = False
    ) -> Decision:
        rules = await self.session_rules(session_id)
        return self.policy.decide(call, mode, rules, explain=explain)

    async def allow_for_session(
        self, session_id: str, call: Call, *, by: str, request_id: str
    ) -> list[RuleSpec]:
        """Add the rules that let the same call run again in this session unasked."""
        specs = session_rules_for(call, f"allowed for the session by {by}")
        await self.ledger.sessions.add_rules(
            session_id,
            [msgspec.json.encode(s).decode() for s in specs],
            created_by=by,
            request_id=request_id,
        )
        return specs
