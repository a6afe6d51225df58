"""The ``lark-oapi`` SDK, imported once and made quiet on stdout.

At import the SDK gives its ``Lark`` logger a handler that writes to *stdout*, which
would break ``tether gateway --json`` (its stdout is JSON lines) and bypass tether's log
format. :func:`load` removes that handler, so the SDK's records reach tether's own
logging (stderr, text or JSON, with its redaction), and imports the SDK (seconds: only
when the channel is on).
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType

__all__ = ["load"]


def load() -> ModuleType:
    """``lark_oapi``, with its logger routed into tether's logging."""
    import lark_oapi

    quiet()
    module: ModuleType = lark_oapi
    return module


def quiet() -> None:
    """Drop every handler the SDK put on its logger that writes to stdout."""
    logger = logging.getLogger("Lark")
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream in (
            sys.stdout,
            sys.__stdout__,
        ):
            logger.removeHandler(handler)
    logger.propagate = True
