"""The one mapper from tether errors to plain-HTTP answers (``/ws`` before the upgrade,
``/enroll``, ``/metrics``): an HTTP status for each stable code and one JSON body shape,
``{"error": {"code": …, "message": …}}``."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from tether.errors import TetherError

__all__ = ["HTTP_STATUS", "error_response"]

HTTP_STATUS: Final[dict[str, int]] = {
    "parse_error": 400,
    "invalid_request": 400,
    "invalid_params": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "overloaded": 503,
    "timeout": 408,
}


def error_response(exc: TetherError, *, headers: dict[str, str] | None = None) -> web.Response:
    """The HTTP response for ``exc`` (status from its code; 500 for anything unlisted)."""
    body = {"error": {"code": exc.code, "message": exc.message}}
    return web.json_response(body, status=HTTP_STATUS.get(exc.code, 500), headers=headers)
