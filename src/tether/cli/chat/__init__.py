"""``tether chat``: the terminal as a chat surface (see :mod:`tether.cli.chat_cmd`)."""

__all__: list[str] = []
