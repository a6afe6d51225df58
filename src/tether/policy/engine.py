"""``decide(call)``: the deny list, then the most specific rule, then the session's mode.

For a shell call every simple command is decided on its own and the strictest answer
wins (deny over ask over allow), so ``ls && rm -rf /`` is denied and ``ls | sh`` asks
unless both parts are allowed. A command line that cannot be parsed asks, in every
mode. Pure: no I/O, no clock; the gateway supplies config and session rules.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tether.config import PolicyConfig, RuleSpec
from tether.policy.calls import Call
from tether.policy.guards import Guard, compile_guards
from tether.policy.rules import SEVERITY, Rule, compile_rules
from tether.policy.shell import SimpleCommand

__all__ = ["MODES", "Decision", "Policy", "mode_decision"]

MODES: dict[str, dict[str, str]] = {
    "auto-read": {"read": "allow", "write": "ask", "exec": "ask"},
    "ask": {"read": "ask", "write": "ask", "exec": "ask"},
    "auto": {"read": "allow", "write": "allow", "exec": "allow"},
}
"""What each mode decides for a risk class when no rule matches."""


_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    """``allow``, ``ask`` or ``deny``."""
    source: str
    """``deny list``, ``config``, ``session``, ``mode`` or ``parser``."""
    rule: str
    """The rule (or mode) that decided, in words."""
    command: str | None = None
    """For a shell call: the simple command that decided."""
    steps: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)
    """``explain``: (command, decision, rule) for each simple command."""


def mode_decision(mode: str, risk: str) -> Decision:
    table = MODES.get(mode, MODES["ask"])
    decision = table.get(risk, "ask")
    return Decision(decision, "mode", f"mode {mode}: {risk} calls {_verb(decision)}")


def _verb(decision: str) -> str:
    return {"allow": "are allowed", "ask": "ask", "deny": "are denied"}[decision]


class Policy:
    """Compiled config rules and deny list; ``decide`` also takes session rules."""

    def __init__(self, config: PolicyConfig) -> None:
        self.guards: list[Guard] = compile_guards([*config.deny, *config.extra_deny])
        self.rules: list[Rule] = sorted(compile_rules(config.rules, "config"), key=_order)
        self._by_tool: dict[tuple[str, str, str], list[Rule]] = {}
        self._command_guards = [g for g in self.guards if g.spec.program or g.spec.paths]
        self._path_guards = [g for g in self.guards if g.paths is not None]

    @staticmethod
    def session_rules(specs: Iterable[RuleSpec]) -> list[Rule]:
        return sorted(compile_rules(specs, "session"), key=_order)

    def _candidates(self, call: Call) -> list[Rule]:
        """The config rules whose tool, risk and workspace conditions fit the call, in
        order (cached per combination; the cache is bounded, as tool names come from
        agents)."""
        key = (call.tool, call.risk, call.workspace)
        found = self._by_tool.get(key)
        if found is None:
            found = [
                r
                for r in self.rules
                if (
                    r.spec.tool is None
                    or r.spec.tool == call.tool
                    or fnmatch.fnmatchcase(call.tool, r.spec.tool)
                )
                and r.spec.risk in (None, call.risk)
                and r.spec.workspace in (None, call.workspace)
            ]
            if len(self._by_tool) >= _CACHE_LIMIT:
                self._by_tool.clear()
            self._by_tool[key] = found
        return found

    def decide(
        self, call: Call, mode: str, session: Sequence[Rule] = (), *, explain: bool = False
    ) -> Decision:
        """Decide ``call`` in ``mode`` with the session's rules (see the module docstring)."""
        for guard in self._path_guards:
            if guard.hits_paths(call):
                return Decision("deny", "deny list", guard.label)
        rules = [r for r in self._candidates(call) if r.matches_call(call)]
        if session:
            rules += [r for r in session if r.matches_call(call)]
            rules.sort(key=_order)
        if call.command is None:
            return self._one(call, rules, None, mode)
        if call.commands is None:
            return Decision("ask", "parser", "the shell command could not be parsed, so it asks")
        if not call.commands:
            return self._one(call, rules, None, mode)
        worst: Decision | None = None
        steps = []
        for cmd in call.commands:
            decided = self._guarded(cmd) or self._one(call, rules, cmd, mode)
            if explain:
                steps.append((cmd.text, decided.decision, decided.rule))
            if worst is None or SEVERITY[decided.decision] > SEVERITY[worst.decision]:
                worst = decided
                if decided.decision == "deny" and not explain:
                    break
        assert worst is not None
        if explain:
            return Decision(worst.decision, worst.source, worst.rule, worst.command, tuple(steps))
        return worst

    def _guarded(self, cmd: SimpleCommand) -> Decision | None:
        for guard in self._command_guards:
            if guard.hits_command(cmd):
                return Decision("deny", "deny list", guard.label, cmd.text)
        return None

    @staticmethod
    def _one(call: Call, rules: list[Rule], cmd: SimpleCommand | None, mode: str) -> Decision:
        for rule in rules:
            if rule.matches_command(cmd):
                text = cmd.text if cmd is not None else None
                return Decision(rule.decision, rule.source, rule.label, text)
        decided = mode_decision(mode, call.risk)
        if cmd is None:
            return decided
        return Decision(decided.decision, decided.source, decided.rule, cmd.text)

    def ordered(self, session: Sequence[Rule] = ()) -> list[tuple[str, str, str]]:
        """(decision, source, rule) in the order they apply: the deny list, then every
        rule, most specific first."""
        out = [("deny", "deny list", g.label) for g in self.guards]
        rules = sorted([*self.rules, *session], key=_order)
        out += [(r.decision, r.source, r.label) for r in rules]
        return out


def _order(rule: Rule) -> tuple[int, int, int]:
    return rule.order
