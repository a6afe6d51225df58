"""The deny list: dangerous commands and paths, refused whatever the mode and rules say.

It catches accidents (an agent that means ``rm -rf ./build`` and types ``rm -rf /``); it
is not a security boundary, since a determined program can always spell a command in a
way no list foresees. The sandbox is the boundary.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from wcmatch import glob

from tether.config import GuardSpec
from tether.policy.calls import Call
from tether.policy.shell import SimpleCommand

__all__ = ["Guard", "compile_guards"]

_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB
WRITERS = frozenset(
    {
        "cp",
        "mv",
        "install",
        "ln",
        "tee",
        "touch",
        "chmod",
        "chown",
        "truncate",
        "rsync",
        "sed",
        "dd",
    }
)
"""Commands whose operands a guarded path (``paths``) is checked against, besides every
command's output redirections: programs that write the files they name."""
_OPTION_VALUES = {"git": frozenset({"-C", "-c"})}
"""Global options that take a value, so the word after them is not the subcommand."""


def _flags(argv: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for word in argv:
        if word.startswith("--"):
            out.add(word.split("=", 1)[0])
        elif word.startswith("-") and len(word) > 1:
            out.add(word)
            out.update(f"-{c}" for c in word[1:])
    return out


def _operand(word: str) -> str:
    word = re.sub(r"/{2,}", "/", word)
    if len(word) > 1 and word.endswith("/"):
        word = word.rstrip("/") or "/"
    while word.endswith("/.") and len(word) > 2:
        word = word[:-2]
    return "/" if word == "/." else word


def _operands(cmd: SimpleCommand) -> tuple[str | None, list[str]]:
    """(subcommand, operands) of a command."""
    values = _OPTION_VALUES.get(cmd.name, frozenset())
    words = list(cmd.argv[1:])
    sub: str | None = None
    operands: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in values:
            skip = True
            continue
        if word.startswith("-") and word != "-":
            continue
        if sub is None:
            sub = word
        operands.append(_operand(word))
    return sub, operands


@dataclass(frozen=True, slots=True)
class Guard:
    spec: GuardSpec
    index: int
    paths: glob.WcMatcher[str] | None
    programs: re.Pattern[str] | None = None
    """``spec.program`` as one compiled pattern."""

    @property
    def label(self) -> str:
        return f"deny list entry {self.index + 1}: {self.spec.reason}"

    def hits_command(self, cmd: SimpleCommand) -> bool:
        spec = self.spec
        if spec.paths and self.paths is not None:
            named = list(cmd.writes)
            if cmd.name in WRITERS:
                named += _operands(cmd)[1]
            if any(self.paths.match(p.lstrip("/")) for p in named):
                return True
        if self.programs is None or not cmd.argv or not self.programs.match(cmd.name):
            return False
        if spec.piped_from and cmd.piped_from not in spec.piped_from:
            return False
        sub, operands = _operands(cmd)
        if spec.subcommand is not None:
            if sub != spec.subcommand:
                return False
            operands = operands[1:]
        if spec.flags:
            present = _flags(cmd.argv[1:])
            if not all(present & set(group) for group in spec.flags):
                return False
        return not spec.args or any(fnmatch.fnmatchcase(o, a) for o in operands for a in spec.args)

    def hits_paths(self, call: Call) -> bool:
        """A write tool's path under a guarded glob."""
        if self.paths is None or call.risk != "write":
            return False
        return any(self.paths.match(p.lstrip("/")) for p in call.paths)


def compile_guards(specs: Iterable[GuardSpec]) -> list[Guard]:
    out = []
    for index, spec in enumerate(specs):
        matcher = glob.compile(spec.paths, flags=_GLOB_FLAGS) if spec.paths else None
        programs = None
        if spec.program:
            either = "|".join(fnmatch.translate(p) for p in spec.program)
            programs = re.compile(f"(?:{either})")
        out.append(Guard(spec, index, matcher, programs))
    return out
