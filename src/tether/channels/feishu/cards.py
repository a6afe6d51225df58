"""Feishu cards (card JSON 2.0) for a run's status and for requests, and card clicks.

Every card tether sends has ``config.update_multi`` (a card that is PATCHed needs it in
the original and in every PATCH), stays under Feishu's 30 KB (its Markdown is cut with a
note), and carries no HTML: its text is the gateway's, with Markdown's own escapes.

A request's buttons carry ``{"tether": 1, "handle", "do" | "answer", "thread"}``; a click
(``card.action.trigger``, in an ``event`` or a ``card`` frame) becomes the chat command it
stands for, sent by the person who clicked: ``/approve H``, ``/approve H session``,
``/deny H`` or ``/answer H CHOICE``. Whether they may decide is the gateway's question,
as for a typed command.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CARD_CLICKED",
    "STREAM_ELEMENT",
    "Click",
    "as_content",
    "click_of",
    "command_of",
    "decided_card",
    "fit",
    "request_card",
    "status_card",
    "stream_card",
]

CARD_CLICKED = "card.action.trigger"
_HANDLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CARD_TEXT = 24_000
"""Bytes of Markdown in one card (Feishu takes 30 KB of card JSON)."""

_LABELS = {
    "en": {"allow_once": "Allow once", "allow_session": "Allow for session", "deny": "Deny"},
    "zh": {"allow_once": "允许一次", "allow_session": "本会话允许", "deny": "拒绝"},
}
_TITLES = {
    "en": {
        "status": "Run",
        "approval": "Approval needed",
        "question": "Question",
        "reply": "Reply",
    },
    "zh": {"status": "运行", "approval": "需要批准", "question": "问题", "reply": "回复"},
}
_CUT = {"en": "(cut: the rest is in the run's log)", "zh": "（已截断：其余内容见运行日志）"}


def _lang(text: str) -> str:
    """zh when the text is mostly written in Chinese (it is in the person's language)."""
    cjk = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    return "zh" if cjk * 4 >= max(1, len(text.strip())) or cjk > 20 else "en"


def _fit(text: str, lang: str) -> str:
    raw = text.encode()
    if len(raw) <= MAX_CARD_TEXT:
        return text
    return raw[:MAX_CARD_TEXT].decode(errors="ignore") + "\n\n" + _CUT[lang]


def _card(title: str, template: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "body": {"elements": elements},
    }


def _markdown(text: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": text}


def status_card(text: str) -> dict[str, Any]:
    """A run's status: the status board's text, its first line as the title's colour."""
    lang = _lang(text)
    first = text.split("\n", 1)[0].lower()
    template = "blue"
    if any(w in first for w in ("done", "完成")):
        template = "green"
    elif any(w in first for w in ("failed", "失败", "expired", "过期")):
        template = "red"
    elif any(w in first for w in ("waiting", "等待", "stopped", "停止")):
        template = "orange"
    return _card(_TITLES[lang]["status"], template, [_markdown(_fit(text, lang))])


def request_card(text: str, handle: str, choices: list[str], thread: str | None) -> dict[str, Any]:
    """An approval (three buttons) or a question (a button per choice; free text is
    answered with ``/answer``, as the text says)."""
    lang = _lang(text)
    question = bool(choices) or text.lstrip().lower().startswith(("question", "问题"))
    base = {"tether": 1, "handle": handle, "thread": thread}
    buttons: list[dict[str, Any]] = []
    if choices:
        for choice in choices[:10]:
            buttons.append(_button(choice[:60], "default", {**base, "answer": choice}))
    elif not question:
        for do, kind in (("allow_once", "primary"), ("allow_session", "default"),
                         ("deny", "danger")):  # fmt: skip
            buttons.append(_button(_LABELS[lang][do], kind, {**base, "do": do}))
    title = _TITLES[lang]["question" if question else "approval"]
    columns = {
        "tag": "column_set",
        "flex_mode": "flow",
        "columns": [{"tag": "column", "width": "auto", "elements": [button]} for button in buttons],
    }
    elements = [_markdown(_fit(text, lang)), *([columns] if buttons else [])]
    return _card(f"{title} · {handle}", "orange", elements)


STREAM_ELEMENT = "reply"


def stream_card(text: str) -> dict[str, Any]:
    """A CardKit card a reply streams into: one Markdown element, ``STREAM_ELEMENT``."""
    lang = _lang(text)
    card = _card(_TITLES[lang]["reply"], "blue", [])
    card["config"]["streaming_mode"] = True
    card["body"]["elements"] = [
        {"tag": "markdown", "element_id": STREAM_ELEMENT, "content": fit(text, lang)}
    ]
    return card


def fit(text: str, lang: str | None = None) -> str:
    """``text`` cut to what one card may hold, with a note when cut."""
    return _fit(text, lang or _lang(text))


def decided_card(text: str, outcome: str) -> dict[str, Any]:
    """A request's card once it is decided, answered or expired: no buttons."""
    lang = _lang(text)
    lowered = outcome.lower()
    template = "red" if any(w in lowered for w in ("den", "expire", "拒绝", "过期")) else "green"
    return _card(
        _TITLES[lang]["approval" if "approv" in text.lower() else "question"],
        template,
        [_markdown(_fit(text, lang)), {"tag": "hr"}, _markdown(f"**{outcome}**")],
    )


def _button(label: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": kind,
        "behaviors": [{"type": "callback", "value": value}],
    }


def as_content(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


@dataclass(frozen=True)
class Click:
    """A person's click on one of tether's request buttons."""

    event_id: str
    open_id: str
    chat_id: str
    message_id: str | None
    handle: str
    thread: str | None
    do: str | None
    answer: str | None


def click_of(envelope: dict[str, Any]) -> Click | None:
    """The click a ``card.action.trigger`` envelope carries; None for a click that is not
    on a tether request button (or misses who, where or what)."""
    header = envelope.get("header") or {}
    event = envelope.get("event") or {}
    value = (event.get("action") or {}).get("value")
    if isinstance(value, str):  # some clients send the value as a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or value.get("tether") != 1:
        return None
    operator = event.get("operator") or {}
    context = event.get("context") or {}
    open_id = operator.get("open_id")
    chat_id = context.get("open_chat_id")
    handle = value.get("handle")
    do, answer = value.get("do"), value.get("answer")
    if do not in (None, "allow_once", "allow_session", "deny") or (do is None) == (answer is None):
        return None
    if not (header.get("event_id") and open_id and chat_id and isinstance(handle, str)):
        return None
    if not _HANDLE.fullmatch(handle):
        return None  # a handle is one word: nothing can ride along into the command
    thread = value.get("thread")
    return Click(
        event_id=str(header["event_id"]),
        open_id=str(open_id),
        chat_id=str(chat_id),
        message_id=context.get("open_message_id"),
        handle=handle,
        thread=str(thread) if thread else None,
        do=do,
        answer=str(answer)[:2000] if answer is not None else None,
    )


def command_of(click: Click) -> str:
    """The chat command a click stands for."""
    handle = click.handle
    if click.answer is not None:
        return f"/answer {handle} {' '.join(click.answer.split())}"
    if click.do == "deny":
        return f"/deny {handle}"
    return f"/approve {handle}" + (" session" if click.do == "allow_session" else "")
