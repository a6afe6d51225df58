"""The Feishu/Lark channel: its long connection, events, API calls and the channel."""

from tether.channels.feishu.channel import FeishuChannel

__all__ = ["FeishuChannel"]
