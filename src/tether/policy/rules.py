"""Policy rules compiled for matching: conditions, specificity, and where each came from."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from wcmatch import glob

from tether.config import RuleSpec
from tether.policy.calls import Call
from tether.policy.shell import SimpleCommand

__all__ = ["SEVERITY", "Rule", "compile_rules", "exact_glob", "session_rules_for"]

SEVERITY = {"allow": 0, "ask": 1, "deny": 2}
_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB


def exact_glob(text: str) -> str:
    """A glob that matches exactly ``text`` (its ``*``, ``?`` and ``[`` made literal)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@dataclass(frozen=True, slots=True)
class Rule:
    spec: RuleSpec
    source: str
    """Where it came from: ``config`` or ``session``."""
    index: int
    paths: glob.WcMatcher[str] | None
    command: re.Pattern[str] | None = None
    """``spec.command`` compiled."""

    @property
    def decision(self) -> str:
        return self.spec.decision

    @property
    def specificity(self) -> int:
        """How many conditions it names: the most specific matching rule decides."""
        s = self.spec
        named = (s.tool, s.risk, s.workspace, s.command)
        return sum(v is not None for v in named) + (1 if s.paths else 0)

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key: most specific first, then deny before ask before allow, then as written."""
        return (-self.specificity, -SEVERITY[self.spec.decision], self.index)

    @property
    def label(self) -> str:
        s = self.spec
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("tool", s.tool),
                ("risk", s.risk),
                ("workspace", s.workspace),
                ("command", s.command),
            )
            if value is not None
        ]
        if s.paths:
            parts.append(f"paths={list(s.paths)!r}")
        text = f"{self.source} rule {self.index + 1}: {s.decision} " + " ".join(parts)
        return f"{text} ({s.reason})" if s.reason else text

    def matches_call(self, call: Call) -> bool:
        """The conditions that do not look at a shell command."""
        s = self.spec
        if (
            s.tool is not None
            and s.tool != call.tool
            and not fnmatch.fnmatchcase(call.tool, s.tool)
        ):
            return False
        if s.risk is not None and s.risk != call.risk:
            return False
        if s.workspace is not None and s.workspace != call.workspace:
            return False
        if self.paths is not None and not (
            call.paths and all(self.paths.match(p) for p in call.paths)
        ):
            return False
        return not (s.command is not None and call.command is None)

    def matches_command(self, cmd: SimpleCommand | None) -> bool:
        """The command condition, for one simple command (None: the call as a whole)."""
        if self.command is None:
            return True
        return cmd is not None and self.command.match(cmd.text) is not None


def compile_rules(specs: Iterable[RuleSpec], source: str, *, start: int = 0) -> list[Rule]:
    out = []
    for index, spec in enumerate(specs, start=start):
        matcher = glob.compile(spec.paths, flags=_GLOB_FLAGS) if spec.paths else None
        command = re.compile(fnmatch.translate(spec.command)) if spec.command is not None else None
        out.append(Rule(spec, source, index, matcher, command))
    return out


def session_rules_for(call: Call, reason: str) -> list[RuleSpec]:
    """The rules "allow for this session" adds for ``call``: the same tool in the same
    workspace, and exactly the same paths or (shell) the same simple commands."""
    if call.command is not None:
        commands = call.commands or ()
        return [
            RuleSpec(
                decision="allow",
                tool=call.tool,
                workspace=call.workspace,
                command=exact_glob(c.text),
                reason=reason,
            )
            for c in commands
        ]
    return [
        RuleSpec(
            decision="allow",
            tool=call.tool,
            workspace=call.workspace,
            paths=[exact_glob(p) for p in call.paths],
            reason=reason,
        )
    ]
