"""``ChannelRelay``: what a run says reaches the push channels of its session's conversation.

It subscribes to every committed event (the fan-out's firehose) and picks those a person
in a chat must see: approval and question prompts with their handles, their decisions,
and the run's end (its reply, or why it failed). Each becomes a delivery keyed by
``run_id:seq`` (the same event is never sent twice) to the conversation the session is
bound to, whichever surface started the run. Sessions no push channel is bound to are
left to the surfaces that read the run stream themselves (``tether chat``, the console).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import msgspec

from tether.errors import NotFound
from tether.gateway.outbox import Outbox
from tether.gateway.phrases import Lang, decision_words, describe_plan, explain, lang_of, say
from tether.gateway.reply_stream import ReplyStreams
from tether.gateway.status import STATUS_KINDS, StatusBoard
from tether.ledger import ConversationRecord, Event, Ledger
from tether.protocol.events import (
    TERMINAL_EVENTS,
    AgentDelta,
    ApprovalRequested,
    ApprovalResolved,
    QuestionAnswered,
    QuestionAsked,
    RunCancelled,
    RunExpired,
    RunFailed,
    RunSucceeded,
    ToolCallFailed,
    decode_payload,
)

__all__ = ["RENDERED", "ChannelRelay"]

log = logging.getLogger(__name__)

RENDERED = frozenset(
    {
        ApprovalRequested.KIND,
        ApprovalResolved.KIND,
        QuestionAsked.KIND,
        QuestionAnswered.KIND,
        ToolCallFailed.KIND,
        *TERMINAL_EVENTS,
    }
)
_SAID_CALL_FAILURES = frozenset(
    {"runner_offline", "capability_denied", "policy_denied", "agent_not_installed", "tool_timeout"}
)
"""Tool call failures said in the chat as they happen: the ones a person can act on."""
_CACHE = 10_000
_FRESH = 5.0
"""Seconds a conversation read stays good for rendering (its language may change)."""


class ChannelRelay:
    """A firehose subscriber (``run_id`` and ``session_id`` are None)."""

    run_id: str | None = None
    session_id: str | None = None

    def __init__(
        self, ledger: Ledger, outbox: Outbox, default_lang: Lang, *, catch_up: float = 3600.0
    ) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.default_lang: Lang = default_lang
        self.catch_up_window = catch_up
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self._conversation_of: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._names: dict[str, str] = {}
        self._conversations: collections.OrderedDict[str, tuple[ConversationRecord, float]] = (
            collections.OrderedDict()
        )
        self._origins: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self.status = StatusBoard(outbox)
        self.streams = ReplyStreams(outbox.channels)
        shows = any(outbox.shows_status(name) for name in outbox.channels)
        streams = any(self.streams.wants(name) for name in outbox.channels)
        self._kinds = RENDERED | STATUS_KINDS if shows else RENDERED
        if streams:
            self._kinds = self._kinds | {AgentDelta.KIND}
        """What to take from the fire hose: status events only when a channel shows them
        (a streaming agent's every delta otherwise)."""

    def offer(self, session_id: str, event: Event) -> None:
        if event.kind in self._kinds:
            self._queue.put_nowait((session_id, event))

    async def catch_up(self) -> int:
        """Relay again what runs of the last ``catch_up`` seconds said (a gateway that died
        between an event and its delivery owes it); what was recorded before is skipped
        by its key. Returns how many events were looked at."""
        seen = 0
        since = time.time() - self.catch_up_window
        for run_id, session_id in await self.ledger.conversations.recent_runs(since):
            if await self._conversation(session_id) is None:
                continue
            for event in await self.ledger.events.read(run_id, limit=100_000):
                if event.kind in RENDERED:
                    seen += 1
                    await self._relay(session_id, event, status=False)
        return seen

    async def loop(self) -> None:
        """Catch up, then render and send what was offered, in order (supervised)."""
        if self.catch_up_window > 0:
            try:
                seen = await self.catch_up()
                log.info("relay caught up", extra={"events": seen})
            except Exception:
                log.exception("catching up on what runs said failed")
        while True:
            session_id, event = await self._queue.get()
            try:
                await self._relay(session_id, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "relaying an event failed", extra={"run_id": event.run_id, "seq": event.seq}
                )

    async def _conversation(self, session_id: str) -> ConversationRecord | None:
        if session_id in self._conversation_of:
            key = self._conversation_of[session_id]
        else:
            key = (await self.ledger.sessions.get(session_id)).conversation_id
            self._conversation_of[session_id] = key
            while len(self._conversation_of) > _CACHE:
                self._conversation_of.popitem(last=False)
        if key is None or not self.outbox.pushes(key.partition(":")[0]):
            return None  # no push channel: its surfaces read the run stream themselves
        cached = self._conversations.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < _FRESH:
            return cached[0]
        conversation = await self.ledger.conversations.get(key)
        self._conversations[key] = (conversation, now)
        while len(self._conversations) > _CACHE:
            self._conversations.popitem(last=False)
        return conversation

    def started(self, run_id: str, message_id: str | None) -> None:
        """The router started ``run_id`` for the platform message ``message_id``: its reply
        is threaded under it (without a read of the receipt)."""
        self._origins[run_id] = message_id
        while len(self._origins) > _CACHE:
            self._origins.popitem(last=False)

    async def _name(self, principal: str) -> str:
        """A user's name for the chat (ids are for machines)."""
        if not principal.startswith("usr_"):
            return principal
        name = self._names.get(principal)
        if name is None:
            try:
                name = (await self.ledger.users.get(principal)).name
            except NotFound:
                name = principal
            self._names[principal] = name
        return name

    async def _relay(self, session_id: str, event: Event, *, status: bool = True) -> None:
        conversation = await self._conversation(session_id)
        if conversation is None or not self.outbox.pushes(conversation.channel):
            return
        lang = lang_of(conversation.lang, self.default_lang)
        raw = event.payload
        if raw.startswith('{"artifact":'):  # a large payload, stored as an artifact
            raw = await self.ledger.events.full_payload(event)
        payload = decode_payload(event.kind, raw)
        if payload is None:
            return
        if status and event.kind in STATUS_KINDS and self.outbox.shows_status(conversation.channel):
            await self.status.follow(conversation, event, payload, lang)
        if status and self.streams.wants(conversation.channel):
            if isinstance(payload, AgentDelta):
                reply_to = self._origins.get(event.run_id)
                self.streams.follow(conversation, event.run_id, payload.text, reply_to)
            elif event.kind in TERMINAL_EVENTS:
                self.streams.end(event.run_id)
        if event.kind in TERMINAL_EVENTS and self.outbox.shows_cards(conversation.channel):
            await self._close_cards(conversation, event, lang)
        if event.kind not in RENDERED:
            return
        if isinstance(payload, ApprovalResolved | QuestionAnswered) and payload.by:
            payload = msgspec.structs.replace(payload, by=await self._name(payload.by))
        rendered = self._render(payload, lang)
        if rendered is None:
            return
        text, kind, handle, choices = rendered
        reply_to = None
        if kind == "reply":
            if event.run_id in self._origins:
                reply_to = self._origins.pop(event.run_id)
            else:
                receipt = await self.ledger.conversations.for_run(event.run_id)
                reply_to = receipt.message_id if receipt is not None else None
        await self.outbox.send(
            conversation,
            text,
            key=f"{event.run_id}:{event.seq}",
            kind=kind,
            run_id=event.run_id,
            reply_to=reply_to,
            request=handle,
            choices=choices,
        )

    async def _close_cards(
        self, conversation: ConversationRecord, event: Event, lang: Lang
    ) -> None:
        """A run's end closes the requests it still had open (``run.*`` cancels them,
        with no event of their own): their cards say so and lose their buttons."""
        for record in await self.ledger.requests.for_run(event.run_id):
            closed_by_end = record.state == "cancelled" and (record.decided_by or "").startswith(
                "run."
            )
            if not (record.is_open or closed_by_end):
                continue
            text = say(
                lang, "resolved", handle=record.handle,
                decision=decision_words("cancelled", lang), by="",
            )  # fmt: skip
            await self.outbox.send(
                conversation,
                text,
                key=f"{event.run_id}:closed:{record.id}",
                run_id=event.run_id,
                request=record.handle,
            )

    @staticmethod
    def _render(payload: Any, lang: Lang) -> tuple[str, str, str | None, list[str]] | None:
        if isinstance(payload, ApprovalRequested):
            text = say(lang, "approval", handle=payload.handle, what=describe_plan(payload))
            return text, "request", payload.handle, []
        if isinstance(payload, QuestionAsked):
            choices = (
                say(lang, "choices", values=", ".join(payload.choices)) if payload.choices else ""
            )
            text = say(
                lang, "question", handle=payload.handle, question=payload.question, choices=choices
            )
            return text, "request", payload.handle, list(payload.choices)
        if isinstance(payload, ApprovalResolved | QuestionAnswered):
            by = f" ({payload.by})" if payload.by else ""
            text = say(
                lang,
                "resolved",
                handle=payload.handle,
                decision=decision_words(payload.decision, lang),
                by=by,
            )
            return text, "notice", payload.handle, []
        if isinstance(payload, RunSucceeded):
            return (payload.output or say(lang, "run_done_empty")), "reply", None, []
        if isinstance(payload, ToolCallFailed):
            if payload.code not in _SAID_CALL_FAILURES:
                return None  # the person decided it, or the agent's reply says it
            why = explain(payload.code, lang, payload.message)
            return say(lang, "call_failed", why=why), "notice", None, []
        if isinstance(payload, RunFailed):
            why = explain(payload.reason or "failed", lang, payload.message or "")
            text = say(lang, "run_failed", why=why)
            if payload.output:
                text = f"{payload.output}\n\n{text}"
            return text, "reply", None, []
        if isinstance(payload, RunCancelled):
            message = f" {payload.message}" if payload.message else ""
            return say(lang, "run_cancelled", message=message), "reply", None, []
        if isinstance(payload, RunExpired):
            return say(lang, "run_expired"), "reply", None, []
        return None
