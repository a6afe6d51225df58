"""The web console's pages: ``GET /`` and ``GET /console/assets/NAME``.

Every asset ships in the package (``console_assets/``) and is read once, when the
gateway starts: a request names one of a fixed set, never a path, and nothing is fetched
from a network. Each answer carries a strict Content-Security-Policy (scripts, styles
and connections from the gateway itself only; no inline script, no frames, no plugins)
and the headers that keep a browser from sniffing, framing or leaking the address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "ConsolePages", "load_assets"]

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        # the one HTML the page inserts is Markdown the gateway sanitized, and only through
        # the policy of that name (the browser refuses any other string as HTML)
        "require-trusted-types-for 'script'",
        "trusted-types tether-markdown",
    ]
)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
}

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the console, as served."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file in the package's ``console_assets`` folder, by name."""
    folder = resources.files("tether.gateway").joinpath("console_assets")
    out: dict[str, Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        out[entry.name] = Asset(body=body, content_type=_TYPES[suffix], etag=etag)
    if "index.html" not in out:
        raise RuntimeError("the console's assets are missing from the package")
    return out


class ConsolePages:
    """See the module docstring; :meth:`routes` lists what to serve."""

    def __init__(self, assets: Mapping[str, Asset] | None = None) -> None:
        self.assets = dict(assets if assets is not None else load_assets())

    def routes(
        self,
    ) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return [
            ("GET", "/", self.index),
            ("GET", "/console/assets/{name}", self.asset),
        ]

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, self.assets["index.html"])

    async def asset(self, request: web.Request) -> web.StreamResponse:
        found = self.assets.get(request.match_info["name"])
        if found is None or request.match_info["name"] == "index.html":
            return web.Response(status=404, text="no such console asset", headers=_HEADERS)
        return self._serve(request, found)

    @staticmethod
    def _serve(request: web.Request, asset: Asset) -> web.StreamResponse:
        headers = {**_HEADERS, "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        response = web.Response(body=asset.body, headers=headers)
        response.content_type, _, _ = asset.content_type.partition(";")
        response.charset = "utf-8"
        response.enable_compression()
        return response
