"""The Feishu/Lark channel: its long connection so far."""

__all__: list[str] = []
