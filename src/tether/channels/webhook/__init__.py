"""The generic webhook channel: wire any system to tether over signed HTTP (docs/channels.md)."""

from tether.channels.webhook.adapter import WebhookChannel

__all__ = ["WebhookChannel"]
