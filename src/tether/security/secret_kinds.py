"""The kinds of secret tether recognises in text, each a pattern with cheap triggers.

Every :class:`SecretKind` runs only when one of its *triggers* (plain substrings) occurs
in the text; all triggers are looked for in one pass (RE2's multi-pattern set, a DFA), so
text without anything secret-looking costs one linear scan instead of a dozen
regular-expression scans (see ``bench/redaction.py``). The vendor formats follow the patterns of
detect-secrets' plugins (a test checks that everything those plugins flag is masked
here); tether adds its own credentials, whole PEM private-key blocks, quoted and JSON
``key = "value"`` assignments, Hugging Face and a few more vendor keys.

A match may keep a prefix (``keep`` group, e.g. ``Bearer `` or ``password=``) and the
quotes around a ``value`` group that is one quoted string; the rest is the secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import re2

__all__ = ["KINDS", "LONGEST_SECRET", "PEM_BEGIN", "PEM_END", "SecretKind", "spans", "triggered"]


@dataclass(frozen=True, slots=True)
class SecretKind:
    """One kind of secret: a pattern, and the substrings without which it cannot match
    (looked up ignoring case). Unless ``multiline``, a match lies within one line, so the
    pattern runs only on the lines where a trigger occurs."""

    name: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    multiline: bool = False
    finder: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        options = re2.Options()
        options.case_sensitive = False
        alternatives = "|".join(re2.escape(t) for t in self.triggers)
        object.__setattr__(self, "finder", re2.compile(alternatives, options))

    def regions(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of the stretches of ``text`` where this kind may match."""
        if self.multiline or len(text) <= _WHOLE:
            return [(0, len(text))]
        try:
            hits = self.finder.finditer(text)
            out: list[tuple[int, int]] = []
            for hit in hits:
                at = hit.start()
                if out and at < out[-1][1]:
                    continue
                end = text.find("\n", at)
                out.append((text.rfind("\n", 0, at) + 1, len(text) if end < 0 else end))
        except UnicodeEncodeError:
            return [(0, len(text))]
        return out

    def sub(self, replace: Callable[[re.Match[str]], str], text: str) -> str:
        """``pattern.sub`` over the regions only."""
        parts: list[str] = []
        last = 0
        for start, end in self.regions(text):
            parts.append(text[last:start])
            parts.append(self.pattern.sub(replace, text[start:end]))
            last = end
        parts.append(text[last:])
        return "".join(parts)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for start, end in self.regions(text):
            for m in self.pattern.finditer(text, start, end):
                yield m.start(), m.end()


_WHOLE = 512
"""Characters below which a text is matched whole (finding lines would cost more)."""


PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")

_B = r"(?:(?<=\\[nrt])|(?<![A-Za-z0-9_]))"
"""Where a token may start: not inside a word, but right after an escaped ``\\n``, ``\\r``
or ``\\t`` (text that is JSON-encoded once more, a Python repr, …)."""

_KEYWORD = (
    r"(?:passw(?:or)?d|passphrase|pass|pwd|secret|token|api[_\-]?key|access[_\-]?key"
    r"|private[_\-]?key|auth[_\-]?key|session[_\-]?key|credentials?)"
)
_ASSIGNMENT = re.compile(
    r"(?i)(?P<keep>" + _KEYWORD + r"(?![a-z])[\w.\-]*\\?[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*)"
    # the value is a shell-like word: quoted and bare pieces side by side ('a'"'"'b')
    r"(?P<value>(?:\\?\"(?:[^\"\\\n]|\\[^\"\n])*(?:\\?\")?"
    r"|\\?'(?:[^'\\\n]|\\[^'\n])*(?:\\?')?"
    r"|[^\s,;&\"'`<>(){}\[\]])+)"
)

KINDS: tuple[SecretKind, ...] = (
    # a whole PEM private-key block, or everything after an unterminated BEGIN line
    SecretKind(
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        ("PRIVATE KEY",),
        multiline=True,
    ),
    # tether's own: admin token tta_…, runner credential ttr_<runner id>.<secret>, …
    SecretKind(
        "tether",
        re.compile(_B + r"tt[a-z]_[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)*"),
        ("tta_", "ttr_", "tte_", "ttl_", "tts_"),
    ),
    SecretKind(
        "jwt",
        re.compile(_B + r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-=]{4,}(?:\.[A-Za-z0-9_\-+/=]*)?"),
        ("eyJ",),
    ),
    SecretKind(
        "github",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9_]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    SecretKind(
        "aws_access_key_id",
        re.compile(_B + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
        ("A3T", "AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    SecretKind(
        "aws_secret_near_name",
        re.compile(
            r"(?i)(?P<keep>aws.{0,20}?(?:key|pwd|pw|password|pass|token).{0,20}?[\"'])"
            r"[0-9a-z/+]{40}(?P<close>[\"'])"
        ),
        ("aws",),
    ),
    SecretKind(
        "openai_anthropic",
        re.compile(_B + r"sk-[A-Za-z0-9_\-]{16,}"),
        ("sk-",),
    ),
    SecretKind(
        "stripe",
        re.compile(_B + r"[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("k_live_", "k_test_"),
    ),
    SecretKind(
        "slack",
        re.compile(
            r"(?i)" + _B + r"xox[abposr]-[a-z0-9\-]{10,}"
            r"|https://hooks\.slack\.com/services/T[a-z0-9_]+/B[a-z0-9_]+/[a-z0-9_]+"
        ),
        ("xox", "hooks.slack.com"),
    ),
    SecretKind("huggingface", re.compile(_B + r"hf_[A-Za-z0-9]{30,}"), ("hf_",)),
    SecretKind("google_api_key", re.compile(_B + r"AIza[0-9A-Za-z_\-]{35}"), ("AIza",)),
    SecretKind("npm", re.compile(_B + r"npm_[A-Za-z0-9]{36}"), ("npm_",)),
    SecretKind("gitlab", re.compile(_B + r"glpat-[A-Za-z0-9_\-]{20,}"), ("glpat-",)),
    SecretKind("pypi", re.compile(_B + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"), ("pypi-",)),
    SecretKind(
        "bearer",
        re.compile(
            r"(?i)(?P<keep>\bbearer[ \t]+"
            r"|\bauthorization[ \t]*[:=][ \t]*(?:basic|token|digest)?[ \t]*)"
            r"[A-Za-z0-9._~+/\-]{8,}=*"
        ),
        ("bearer", "authorization"),
    ),
    SecretKind(
        "url_password",
        re.compile(r"(?P<keep>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]+:)[^@\s/]+(?=@)"),
        ("://",),
    ),
    SecretKind(
        "assignment",
        _ASSIGNMENT,
        ("pass", "pwd", "secret", "token", "key", "credential"),
    ),
)
"""In the order they are applied (the first to match a stretch of text masks it)."""

LONGEST_SECRET = 8192
"""Characters: no secret kind but a PEM block (held as a block) is longer in practice
(long JWTs included); the streaming redactor holds back at least this much."""


def _trigger_set() -> tuple[Any, list[tuple[SecretKind, ...]]]:
    triggers = sorted({t.lower() for kind in KINDS for t in kind.triggers})
    options = re2.Options()
    options.case_sensitive = False
    found = re2.Set.SearchSet(options)
    for trigger in triggers:
        found.Add(re2.escape(trigger))
    found.Compile()
    owners = [tuple(k for k in KINDS if t in {x.lower() for x in k.triggers}) for t in triggers]
    return found, owners


_TRIGGERS, _OWNERS = _trigger_set()


def triggered(text: str) -> list[SecretKind]:
    """The kinds whose triggers occur in ``text``, in :data:`KINDS` order: one pass of a
    DFA over the text (RE2's multi-pattern set), whatever the number of triggers."""
    try:
        hits = _TRIGGERS.Match(text)
    except UnicodeEncodeError:  # lone surrogates: no fast path, try every kind
        return list(KINDS)
    if not hits:
        return []
    if len(hits) == 1:
        return list(_OWNERS[hits[0]])
    wanted = {kind.name for i in hits for kind in _OWNERS[i]}
    return [k for k in KINDS if k.name in wanted]


def spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every stretch of ``text`` some kind would mask (may overlap)."""
    for kind in triggered(text):
        yield from kind.spans(text)
