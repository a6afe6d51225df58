"""Shell command lines split into the simple commands they would run.

``parse_shell("cd src && FOO=1 sh -c 'rm -rf build' | tee log")`` gives ``cd src``,
``sh -c 'rm -rf build'``, ``rm -rf build`` (the script of ``sh -c``) and ``tee log``,
each with its environment prefix, redirection targets and the command piping into it.
Policy then checks every one of them.

It is a scanner written for this purpose rather than a full shell grammar (a general
parser costs 150-400 µs a command; this one a few tens): quotes, escapes, comments,
``$(…)``, backticks and ``<(…)`` (whose commands are parsed too), pipelines, ``&&``,
``||``, ``;``, ``&``, subshells, redirections, ``if``/``while``/``for`` keywords, and
wrappers (``sudo``, ``env``, ``xargs``, ``timeout`` …, ``sh -c``, ``eval``) whose inner
command is checked as well as the wrapper. What it does not understand — a heredoc,
``case``, a function definition, arithmetic, a command name that is itself an
expansion, unbalanced quotes — is :data:`None`: the caller must treat it as unknown
(policy asks). It is a guardrail for accidents, never the boundary: the sandbox is.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

__all__ = ["SimpleCommand", "parse_shell"]

MAX_DEPTH = 6
"""Nesting of ``sh -c``, ``eval`` and substitutions beyond which a command is unknown."""
MAX_COMMANDS = 256
MAX_LENGTH = 100_000

_OPERATORS: tuple[str, ...] = (
    *("&&", "||", ";;", "|&", "&>>", "&>", ">>", ">|", ">&", "<&", "<>"),
    *("|", "&", ";", "<", ">", "(", ")", "\n"),
)
"""Longest first, so ``>>`` is not read as two ``>``."""
_OPERATOR_START = frozenset(o[0] for o in _OPERATORS)
_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", "<", "<>", ">&", "<&"})
_WRITES = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
_SEPARATORS = frozenset({"&&", "||", ";", "&", "(", ")", "\n"})
_PREFIX_WORDS = frozenset(
    {"!", "{", "}", "then", "do", "else", "elif", "if", "while", "until", "fi", "done"}
)
"""Keywords in front of a command (``do rm x``) or alone (``done``): not commands."""
_UNKNOWN_WORDS = frozenset({"case", "select", "function", "[[", "((", "coproc"})
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\+?=")
_SPACE = " \t"


class Unknown(Exception):
    """The command line uses something the scanner does not understand."""


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One command a shell line would run."""

    argv: tuple[str, ...]
    """Words as the shell would pass them (quotes removed; expansions left as written)."""
    env: tuple[str, ...] = ()
    """Names of the ``NAME=value`` assignments in front of it."""
    writes: tuple[str, ...] = ()
    """Files it redirects output to."""
    reads: tuple[str, ...] = ()
    piped_from: str | None = None
    """The name of the command whose output is piped into this one."""
    via: str | None = None
    """The wrapper it was found inside (``sudo``, ``sh -c`` …), if any."""
    name: str = field(init=False, compare=False)
    """The program's base name: ``/usr/bin/git`` is ``git``."""
    text: str = field(init=False, compare=False)
    """Name and arguments joined by single spaces, then its redirections as ``> FILE``
    and ``< FILE``: what command rules match (so a rule for ``echo hi`` does not also
    allow ``echo hi > ~/.bashrc``)."""

    def __post_init__(self) -> None:
        name = posixpath.basename(self.argv[0]) if self.argv else ""
        words = [name, *self.argv[1:]] if self.argv else []
        words += [f"> {w}" for w in self.writes] + [f"< {r}" for r in self.reads]
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "text", " ".join(words))


@dataclass(slots=True)
class _Word:
    text: str = ""
    dynamic: bool = False
    """Contains an expansion (``$X``, ``$(…)``, backticks)."""
    started: bool = False
    quoted: bool = False


@dataclass(slots=True)
class _Scan:
    tokens: list[tuple[str, str | _Word]] = field(default_factory=list)
    """("word", _Word) or ("op", operator)."""
    nested: list[SimpleCommand] = field(default_factory=list)
    """Commands found inside substitutions."""


def parse_shell(line: str) -> list[SimpleCommand] | None:
    """Every simple command ``line`` would run, or None when it cannot be known."""
    if len(line) > MAX_LENGTH:
        return None
    try:
        out = _parse(line, 0)
    except (Unknown, RecursionError):
        return None
    return out if len(out) <= MAX_COMMANDS else None


def _parse(line: str, depth: int) -> list[SimpleCommand]:
    if depth > MAX_DEPTH:
        raise Unknown("nested too deeply")
    scan = _scan(line, depth)
    commands = _split(scan.tokens, depth)
    commands.extend(scan.nested)
    if len(commands) > MAX_COMMANDS:
        raise Unknown("too many commands")
    return commands


# ---- scanning ----------------------------------------------------------------------


def _closing(line: str, start: int, open_: str, close: str) -> int:
    """Index of the ``close`` that balances the ``open_`` before ``start`` (quote-aware)."""
    depth, i, n = 1, start, len(line)
    quote = ""
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 1
        elif quote == '"':
            if c == '"':
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Unknown(f"unbalanced {open_!r}")


def _scan(line: str, depth: int) -> _Scan:
    scan = _Scan()
    word = _Word()
    i, n = 0, len(line)

    def end_word() -> None:
        nonlocal word
        if word.started:
            scan.tokens.append(("word", word))
        word = _Word()

    def substitution(inner: str) -> None:
        scan.nested.extend(_parse(inner, depth + 1))
        word.dynamic = word.started = True
        word.text += "$(…)"

    quote = ""
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                word.text += c
            i += 1
            continue
        if c == "\\":
            if i + 1 >= n:
                raise Unknown("a trailing backslash")
            nxt = line[i + 1]
            i += 2
            if nxt == "\n":
                continue  # a line continuation
            word.text += c + nxt if quote == '"' and nxt not in '$`"\\' else nxt
            word.started = True
            continue
        if c == "$" and i + 1 < n:
            nxt = line[i + 1]
            if nxt == "(":
                if line.startswith("$((", i):
                    raise Unknown("arithmetic expansion")
                close = _closing(line, i + 2, "(", ")")
                substitution(line[i + 2 : close])
                i = close + 1
                continue
            if nxt == "{" or nxt.isalnum() or nxt in "_@*#?$!-":
                word.dynamic = word.started = True
                word.text += c
                i += 1
                continue
        if c == "`":
            close = line.find("`", i + 1)
            if close < 0:
                raise Unknown("unbalanced backtick")
            substitution(line[i + 1 : close])
            i = close + 1
            continue
        if quote == '"':
            if c == '"':
                quote = ""
            else:
                word.text += c
            i += 1
            continue
        # unquoted
        if c in "'\"":
            quote = c
            word.started = word.quoted = True
            i += 1
            continue
        if c in _SPACE:
            end_word()
            i += 1
            continue
        if c == "#" and not word.started:
            nl = line.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c in "<>" and i + 1 < n and line[i + 1] == "(":
            close = _closing(line, i + 2, "(", ")")
            end_word()
            substitution(line[i + 2 : close])
            end_word()
            i = close + 1
            continue
        op = None
        if c in _OPERATOR_START:
            op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
        if op is not None:
            if op in ("<", "<&", "<>") and line.startswith("<<", i):
                raise Unknown("a heredoc")
            if op == "(" and word.started:
                raise Unknown("a function definition")
            if op in _REDIRECTS and word.started and not word.quoted and word.text.isdigit():
                word = _Word()  # "2>file": the digits name a descriptor
            end_word()
            scan.tokens.append(("op", op))
            i += len(op)
            continue
        word.text += c
        word.started = True
        i += 1
    if quote:
        raise Unknown("unbalanced quotes")
    end_word()
    return scan


# ---- splitting into simple commands --------------------------------------------------


def _split(tokens: list[tuple[str, str | _Word]], depth: int) -> list[SimpleCommand]:
    out: list[SimpleCommand] = []
    words: list[_Word] = []
    writes: list[str] = []
    reads: list[str] = []
    piped_from: str | None = None
    i = 0

    def flush(next_piped: bool) -> None:
        nonlocal words, writes, reads, piped_from
        made = _command(words, writes, reads, piped_from, depth)
        out.extend(made)
        piped_from = made[0].name if (next_piped and made) else None
        words, writes, reads = [], [], []

    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "op":
            assert isinstance(value, str)
            if value in _REDIRECTS:
                if i + 1 >= len(tokens) or tokens[i + 1][0] != "word":
                    raise Unknown(f"{value!r} without a target")
                target = tokens[i + 1][1]
                assert isinstance(target, _Word)
                if value in (">&", "<&") and (target.text.isdigit() or target.text == "-"):
                    pass  # a descriptor copy, not a file
                elif value in _WRITES or value == ">&":
                    writes.append(target.text)
                else:
                    reads.append(target.text)
                i += 2
                continue
            if value == ";;":
                raise Unknown("case")
            flush(value in ("|", "|&"))
            i += 1
            continue
        assert isinstance(value, _Word)
        words.append(value)
        i += 1
    flush(False)
    return out


def _command(
    words: list[_Word], writes: list[str], reads: list[str], piped_from: str | None, depth: int
) -> list[SimpleCommand]:
    while words and not words[0].quoted and words[0].text in _PREFIX_WORDS:
        words = words[1:]
    env: list[str] = []
    while words and not words[0].quoted and _ASSIGNMENT.match(words[0].text):
        env.append(words[0].text.split("=", 1)[0].rstrip("+"))
        words = words[1:]
    if not words:
        if writes or reads or env:
            return [
                SimpleCommand(argv=(), env=tuple(env), writes=tuple(writes), reads=tuple(reads))
            ]
        return []
    head = words[0]
    if not head.quoted and head.text in _UNKNOWN_WORDS:
        raise Unknown(head.text)
    if not head.quoted and head.text == "for":
        return []  # "for NAME in WORDS": the loop's commands follow after "do"
    if head.dynamic:
        raise Unknown("the command name is an expansion")
    cmd = SimpleCommand(
        argv=tuple(w.text for w in words),
        env=tuple(env),
        writes=tuple(writes),
        reads=tuple(reads),
        piped_from=piped_from,
    )
    return [cmd, *_inner(cmd, words, depth)]


def _inner(cmd: SimpleCommand, words: list[_Word], depth: int) -> list[SimpleCommand]:
    """The commands a wrapper runs: ``sh -c SCRIPT``, ``eval WORDS``, ``sudo CMD`` …"""
    name = cmd.name
    if name in _SHELLS:
        for index, w in enumerate(words[1:], start=1):
            if w.text.startswith("--"):
                continue
            if w.text.startswith("-") and "c" in w.text[1:]:
                if index + 1 >= len(words):
                    raise Unknown(f"{name} -c without a script")
                script = words[index + 1]
                if script.dynamic:
                    raise Unknown(f"{name} -c with an expanded script")
                return _via(_parse(script.text, depth + 1), f"{name} -c")
            if not w.text.startswith("-"):
                return []  # a script file: its commands cannot be known from here
        return []
    if name == "eval":
        if any(w.dynamic for w in words[1:]):
            raise Unknown("eval of an expansion")
        return _via(_parse(" ".join(w.text for w in words[1:]), depth + 1), "eval")
    skip = _WRAPPERS.get(name)
    if skip is None:
        return []
    rest = words[1:]
    while rest:
        text = rest[0].text
        if name == "env" and not rest[0].quoted and _ASSIGNMENT.match(text):
            rest = rest[1:]
        elif text.startswith("-") and text != "-":
            takes_value = text in skip
            rest = rest[2:] if takes_value else rest[1:]
        elif name in ("timeout", "nice", "ionice") and text.replace(".", "").isdigit():
            rest = rest[1:]  # timeout's duration
        else:
            break
    if not rest:
        return []
    return _via(_command(rest, list(cmd.writes), list(cmd.reads), cmd.piped_from, depth + 1), name)


_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "-S", "--unset", "--chdir"}),
    "nohup": frozenset(),
    "nice": frozenset({"-n"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "time": frozenset({"-f", "-o"}),
    "command": frozenset(),
    "builtin": frozenset(),
    "exec": frozenset({"-a"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "xargs": frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s"}),
    "chroot": frozenset(),
    "setsid": frozenset(),
    "unbuffer": frozenset(),
}
"""Programs that run another command, with their options that take a value."""


def _via(commands: list[SimpleCommand], wrapper: str) -> list[SimpleCommand]:
    return [
        SimpleCommand(
            argv=c.argv,
            env=c.env,
            writes=c.writes,
            reads=c.reads,
            piped_from=c.piped_from,
            via=c.via or wrapper,
        )
        for c in commands
    ]
