"""Chat channels behind one contract (see :mod:`tether.channels.contract`).

Each adapter package has the same files: ``adapter`` (the channel), ``events`` (platform
events -> :class:`InboundMessage`), ``render`` (a :class:`Delivery` -> the platform's
format), ``config`` and ``errors`` (every platform failure, translated once).
"""

from tether.channels.contract import (
    Accepted,
    Answered,
    Attachment,
    Channel,
    ChannelCapabilities,
    ChatKind,
    Delivered,
    Delivery,
    DeliveryResult,
    FileChannel,
    HttpRoute,
    InboundMessage,
    Inbox,
    Permanent,
    RetryAfter,
    Sender,
    StreamingChannel,
    StreamUpdate,
)

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
