"""Security primitives, pure: capability tokens, credentials, path policy, redaction."""
