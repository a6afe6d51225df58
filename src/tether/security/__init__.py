"""Security primitives, pure: capability tokens, credentials, path policy, redaction."""

__all__: list[str] = []
