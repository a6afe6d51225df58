"""What tether says in chats: every phrase in both languages, long text split well."""

from __future__ import annotations

import re
import string

import pytest

from tether.gateway.outbox import split_text
from tether.gateway.phrases import PHRASES, guess_language, say


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


@pytest.mark.parametrize("key", sorted(PHRASES))
def test_every_phrase_has_both_languages_with_the_same_fields(key: str) -> None:
    en, zh = PHRASES[key]["en"], PHRASES[key]["zh"]
    assert (en and zh and en != zh) or key in ("setting",)
    assert _fields(en) == _fields(zh)
    values = dict.fromkeys(_fields(en), "X")
    assert say("en", key, **values)
    assert say("zh", key, **values)


def test_chinese_is_told_from_the_text() -> None:
    assert guess_language("帮我看看这个错误") == "zh"
    assert guess_language("/status") is None
    assert guess_language("fix the bug, 谢谢") == "zh"


def test_long_text_is_split_within_the_limit_at_sensible_places() -> None:
    paragraphs = ["\n".join(f"line {p}.{i} " + "x" * 40 for i in range(20)) for p in range(30)]
    text = "\n\n".join(paragraphs)
    pieces = split_text(text, 4000)
    assert all(len(p.encode()) <= 4000 for p in pieces)
    assert len(pieces) > 1
    assert all(re.match(r"line \d+\.\d+ ", p) for p in pieces)  # each starts at a line
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    wide = "汉" * 5000  # 3 bytes each, no breaks: cut between characters
    cut = split_text(wide, 1000)
    assert all(len(p.encode()) <= 1000 for p in cut)
    assert "".join(cut) == wide
    assert split_text("short", 1000) == ["short"]


ISSUE_CODES = [
    "runner_offline",
    "capability_denied",
    "policy_denied",
    "approval_denied",
    "approval_expired",
    "question_expired",
    "tool_failed",
    "tool_timeout",
    "timeout",
    "agent_not_installed",
    "agent_crashed",
    "delivery_failed",
]


@pytest.mark.parametrize("code", ISSUE_CODES)
def test_every_error_code_reads_as_words_in_both_languages(code: str) -> None:
    from tether.gateway.phrases import EXPLAINED, explain
    from tether.protocol.codes import CODES

    assert code in CODES  # a wire code, in the one table
    assert code in EXPLAINED
    en, zh = explain(code, "en", "the detail"), explain(code, "zh", "the detail")
    assert en != zh
    assert code not in en  # words, not the code
    assert "{" not in en
    assert "{" not in zh
    assert guess_language(zh) == "zh"


def test_what_needs_a_command_names_it() -> None:
    from tether.gateway.phrases import explain

    assert "tether runner" in explain("runner_offline", "en")
    assert "tether runner" in explain("runner_offline", "zh")
    assert "tether policy explain" in explain("policy_denied", "en", "rm -rf /")
    assert "tether policy explain" in explain("policy_denied", "zh", "rm -rf /")
    assert explain("something_new", "en", "detail") == "something_new: detail"
