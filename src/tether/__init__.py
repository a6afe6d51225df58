"""tether: drive AI coding agents on your own machines from the chats you already use."""

__version__ = "0.1.0"

__all__ = ["__version__"]
