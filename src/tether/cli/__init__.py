"""The ``tether`` command."""

__all__: list[str] = []
