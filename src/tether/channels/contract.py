"""The channel contract: what every chat surface gives the gateway and takes from it.

A channel turns a platform event into one :class:`InboundMessage` and hands it to the
gateway's :class:`Inbox`, which records a durable receipt before it returns (only then
may the channel acknowledge its platform). Outbound, the gateway calls the channel's one
seam, :meth:`Channel.deliver`, with a :class:`Delivery`; the channel answers with a
:class:`DeliveryResult`: the platform's message id, or a typed error saying whether a
retry makes sense (:class:`RetryAfter`) or not (:class:`Permanent`). A channel declares
what it can do in :class:`ChannelCapabilities`; the router and renderers read those,
never the channel's type.

Channels import only public contracts (this module, ``tether.config``, errors, types);
never the ledger or the gateway's internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "Accepted",
    "Answered",
    "Attachment",
    "Channel",
    "ChannelCapabilities",
    "ChatKind",
    "Delivered",
    "Delivery",
    "DeliveryResult",
    "FileChannel",
    "HttpRoute",
    "InboundMessage",
    "Inbox",
    "Permanent",
    "RetryAfter",
    "Sender",
    "StreamUpdate",
    "StreamingChannel",
]

ChatKind = Literal["p2p", "group", "topic"]
"""A direct chat, a group, or a topic (thread) of a group: each topic is a conversation."""

Text = Annotated[str, msgspec.Meta(max_length=100_000)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Sender(msgspec.Struct, frozen=True, kw_only=True):
    id: Ident
    """The platform's id for the person (stable; what ``tether users link`` names)."""
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=300)]
    media_type: Annotated[str, msgspec.Meta(max_length=100)] = "application/octet-stream"
    size: int | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    """Where the platform serves it, if it does."""
    key: Annotated[str, msgspec.Meta(max_length=300)] | None = None
    """The platform's handle for it, which its channel's :meth:`FileChannel.fetch` takes."""
    artifact: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """The ledger artifact holding its bytes (a file tether sends)."""


class InboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message from a person on a channel, normalised."""

    channel: str
    """The channel instance (``webhook.ops``, ``feishu``, ``console``)."""
    event_id: Ident
    """The platform's id for this delivery of the event: the dedupe key with ``channel``."""
    chat_id: Ident
    chat_kind: ChatKind = "p2p"
    thread: Ident | None = None
    """The topic or thread inside a group (its own conversation)."""
    sender: Sender
    text: Text = ""
    message_id: Ident | None = None
    """The platform's id for the message (replies are threaded under it)."""
    mentions: list[str] = []
    """Ids of those the message @-mentions."""
    addressed: bool = False
    """Whether the message is addressed to tether: a direct chat, an @-mention of the bot,
    or a reply to one of its messages."""
    reply_to: Ident | None = None
    """The message this one replies to."""
    quoted: Annotated[str, msgspec.Meta(max_length=20_000)] | None = None
    """The text of that message, when the platform says."""
    attachments: list[Attachment] = []
    lang: Literal["en", "zh"] | None = None
    """The sender's language when the platform knows it (else it is guessed from the text)."""
    sent_at: float | None = None
    """When the platform says it was sent. Never used to drop a message as "old"."""

    @property
    def conversation(self) -> str:
        """The conversation's key: ``channel:chat_id[:thread]``."""
        return f"{self.channel}:{self.chat_id}" + (f":{self.thread}" if self.thread else "")


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    duplicate: bool
    """True when the same (channel, event id) was received before: acknowledge, do nothing."""


class Answered(msgspec.Struct, frozen=True, kw_only=True):
    duplicate: bool
    """True when the same (channel, event id) was received before: nothing was done again."""
    replies: list[str] = []
    """What tether answered (a command's output), in the person's language."""


class Inbox(Protocol):
    """The gateway side of inbound messages."""

    async def accept(self, message: InboundMessage) -> Accepted:
        """Record the message's receipt durably (then process it, in the background);
        returns once the receipt is committed."""
        ...

    async def answer(self, message: InboundMessage) -> Answered:
        """Record the message's receipt and handle it now: for a command whose answer the
        platform shows at once (a card button's toast). The answer is also sent to the
        chat, as for a typed command."""
        ...


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One outbound message for a conversation."""

    channel: str
    conversation: str
    chat_id: str
    thread: str | None = None
    kind: Literal["reply", "request", "notice", "status"] = "notice"
    """``reply``: a run's answer; ``request``: an approval or question prompt; ``status``:
    a run's status message; ``notice``: everything else (command answers, "queued",
    refusals)."""
    text: str
    idempotency_key: str
    """The same for every attempt of this delivery: the platform may dedupe on it."""
    run_id: str | None = None
    reply_to: str | None = None
    """The platform message this answers, when there is one."""
    request: str | None = None
    """For a request prompt: its short handle."""
    choices: list[str] = []
    edit: str | None = None
    """Edit this platform message in place instead of sending a new one (a run's status,
    on a channel that can edit)."""
    asked: str | None = None
    """For a request's outcome (a ``notice`` with ``request``) on a channel with cards:
    the text of the request as it was shown, in the message ``edit`` names (its card,
    which can now show the outcome instead)."""
    file: Attachment | None = None
    """A file to send (``/send``): the outbox hands its bytes to
    :meth:`FileChannel.deliver_file`; ``text`` is its caption."""


class StreamUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """What a run's reply says so far, for a channel that streams it (best effort: an
    update may be skipped or lost; the complete reply comes as a :class:`Delivery`)."""

    channel: str
    conversation: str
    chat_id: str
    thread: str | None = None
    run_id: str
    text: str
    """Everything the agent has written so far (not a delta)."""
    reply_to: str | None = None


@runtime_checkable
class StreamingChannel(Protocol):
    """A channel that shows a reply as it is written (``capabilities.streaming``)."""

    async def stream(self, update: StreamUpdate) -> None:
        """Show ``update``; never raises for a platform failure (the reply still comes)."""
        ...


@runtime_checkable
class FileChannel(Protocol):
    """A channel that carries files both ways (``capabilities.files``)."""

    async def fetch(self, message: InboundMessage, attachment: Attachment, limit: int) -> bytes:
        """The bytes of one of ``message``'s attachments, at most ``limit`` of them;
        raises ``TooLarge`` past it and ``TetherError`` when the platform fails."""
        ...

    async def deliver_file(self, delivery: Delivery, content: bytes) -> DeliveryResult:
        """Send ``delivery.file`` with ``content`` (never raises for a platform failure)."""
        ...


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str | None = None
    """The platform's id for the message it created."""


class RetryAfter(msgspec.Struct, frozen=True, kw_only=True):
    """The platform did not take it, and a later attempt may succeed."""

    seconds: float
    """What the platform asked to wait (a rate-limit hint); 0: it did not say."""
    reason: str


class Permanent(msgspec.Struct, frozen=True, kw_only=True):
    """The platform refused it for good (bad request, no permission): never retry."""

    reason: str


DeliveryResult = Delivered | RetryAfter | Permanent


class ChannelCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel's platform can do (read by renderers and the outbox)."""

    push: bool = True
    """Deliveries are sent to the platform; False for surfaces that read the run stream
    themselves (``console``, ``web``)."""
    status: bool = False
    """Runs show a status message (state, tool calls, time) in the conversation."""
    edit: bool = False
    """A sent message can be edited in place: the status is one message, edited."""
    edit_interval: float = 1.0
    """Seconds between two edits of one message at most (the platform's limit)."""
    cards: bool = False
    buttons: bool = False
    streaming: bool = False
    files: bool = False
    """Attachments in messages are fetched, and ``/send`` sends files (:class:`FileChannel`)."""
    max_message_bytes: int = 16_000
    """Longer text is split across messages."""


HttpHandler = Callable[..., Awaitable[object]]


@dataclass(frozen=True)
class HttpRoute:
    """An endpoint a channel serves on the gateway's HTTP server."""

    method: str
    path: str
    handler: HttpHandler


class Channel(Protocol):
    """A chat surface behind the one contract."""

    name: str
    """The channel instance's name (``webhook.ops``); the ``channel`` of its messages."""
    capabilities: ChannelCapabilities

    def routes(self, inbox: Inbox) -> Sequence[HttpRoute]:
        """The HTTP endpoints it serves (a webhook), feeding ``inbox``."""
        ...

    async def start(self, inbox: Inbox) -> None:
        """Begin feeding ``inbox`` from connections it opens itself (a long connection),
        once the gateway is up."""
        ...

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one message; never raises for a platform failure (it is a result)."""
        ...

    async def aclose(self) -> None:
        """Release connections and tasks."""
        ...
