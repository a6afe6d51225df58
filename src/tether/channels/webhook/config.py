"""The webhook channel's configuration (``[channels.webhook.NAME]``) and its secret."""

from __future__ import annotations

from collections.abc import Mapping

from tether.config import WebhookConfig

__all__ = ["MIN_SECRET_CHARS", "WebhookConfig", "secret_of"]

MIN_SECRET_CHARS = 32


def secret_of(config: WebhookConfig, env: Mapping[str, str]) -> tuple[bytes | None, str]:
    """The shared secret from the environment, or None and why not (the channel then
    refuses every message: fail closed)."""
    if not config.secret_env:
        return None, "secret_env is not set"
    value = env.get(config.secret_env, "")
    if not value:
        return None, f"the environment variable {config.secret_env} is not set"
    if len(value) < MIN_SECRET_CHARS:
        return None, f"{config.secret_env} is shorter than {MIN_SECRET_CHARS} characters"
    return value.encode(), ""
