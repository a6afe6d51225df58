"""Policy: which tool calls are allowed, which ask a person, which are refused.

Pure (no I/O): :class:`Policy` decides a :class:`Call` from the deny list, config and
session rules, and the session's mode; see docs/security.md for the rules' language.
"""

from tether.policy.calls import Call, describe_call, normalize_path
from tether.policy.engine import MODES, Decision, Policy, mode_decision
from tether.policy.rules import Rule, exact_glob, session_rules_for
from tether.policy.shell import SimpleCommand, parse_shell

__all__ = [
    "MODES",
    "Call",
    "Decision",
    "Policy",
    "Rule",
    "SimpleCommand",
    "describe_call",
    "exact_glob",
    "mode_decision",
    "normalize_path",
    "parse_shell",
    "session_rules_for",
]
