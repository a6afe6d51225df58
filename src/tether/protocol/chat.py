"""Params and results of ``chat.send``, and of linking channel identities to users."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "ChatSendParams",
    "ChatSent",
    "ConversationGetParams",
    "ConversationInfo",
    "DeliveryInfo",
    "DeliveryList",
    "DeliveryListParams",
    "UserLinkParams",
    "UserLinked",
    "UserPairParams",
    "UserPairing",
    "UserUnlinkParams",
]

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ChatSendParams(_Params):
    """Say something in a conversation, as a chat surface (the terminal, the console).

    The text goes where a chat message would: a ``/`` command, or input for the session
    (a new run, steering for the active run, or a queued run). Replies and requests come
    through ``run.subscribe`` on the session, which every surface attached to it sees."""

    text: Annotated[str, msgspec.Meta(max_length=100_000)]
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """Chosen by the client, unique per message: a resend with the same id is a duplicate
    (acknowledged, not run again)."""
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """Talk in this session (it may be a chat's: the work continues here)."""
    conversation: Annotated[str, msgspec.Meta(min_length=1, max_length=400)] | None = None
    """Talk in this conversation's current session (``webhook.ops:chat-1``)."""
    channel: Literal["console", "web"] = "console"
    """The surface: each person has one conversation per surface when neither a session
    nor a conversation is given."""
    lang: Literal["en", "zh"] | None = None


class ChatSent(msgspec.Struct, kw_only=True):
    duplicate: bool
    """True when this ``event_id`` was sent before: nothing was done again."""
    disposition: str | None = None
    """``started``, ``queued``, ``steered``, ``dropped``, ``command``, ``refused`` or
    ``ignored``."""
    session_id: str | None = None
    """The session it went to (a new one after ``/new``): subscribe to it."""
    run_id: str | None = None
    replies: list[str] = []
    """What tether answers right away (command output, "queued" …)."""


class ConversationGetParams(_Params):
    """A conversation and the session it talks in now: a chat's key (``webhook.ops:chat-1``),
    or, without one, the caller's own conversation on ``channel`` (its terminal or console)."""

    conversation: Annotated[str, msgspec.Meta(min_length=1, max_length=400)] | None = None
    channel: Literal["console", "web"] = "console"


class ConversationInfo(msgspec.Struct, kw_only=True):
    id: str
    """``channel:chat_id[:thread]``."""
    channel: str
    chat_id: str
    thread: str | None
    kind: str
    """``p2p``, ``group`` or ``topic``."""
    session_id: str | None
    """The session its messages go to now (none before the first one)."""
    lang: str | None = None
    created_at: float
    updated_at: float | None = None


class UserLinkParams(_Params):
    user: Ident
    """Name or id."""
    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    """The channel instance: ``webhook.NAME``, ``feishu``."""
    id: Ident
    """The person's id on that channel."""


class UserLinked(msgspec.Struct, kw_only=True):
    user: str
    user_name: str
    channel: str
    id: str


class UserUnlinkParams(_Params):
    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    id: Ident


class UserPairParams(_Params):
    user: Ident | None = None
    """Name or id; without it, the owner's own user (``owner``, made if missing)."""


class UserPairing(msgspec.Struct, kw_only=True):
    user: str
    user_name: str
    code: str
    """Send ``/pair CODE`` from the chat (once, before ``expires_at``)."""
    expires_at: float


class DeliveryListParams(_Params):
    run_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    conversation: Annotated[str, msgspec.Meta(max_length=400)] | None = None
    states: list[Literal["pending", "sending", "delivered", "dead", "superseded"]] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class DeliveryInfo(msgspec.Struct, kw_only=True):
    id: str
    channel: str
    conversation: str
    run_id: str | None
    kind: str
    state: str
    """``pending``, ``sending``, ``delivered``, ``dead`` (given up) or ``superseded``."""
    attempts: int
    next_attempt_at: float | None
    platform_message_id: str | None
    last_error: str | None
    text: str
    created_at: float
    updated_at: float


class DeliveryList(msgspec.Struct, kw_only=True):
    deliveries: list[DeliveryInfo]
