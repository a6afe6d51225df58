"""Who may read ``/metrics``: peers in ``gateway.metrics_networks`` (loopback by default),
or any peer presenting ``gateway.metrics_token`` as a bearer token."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from tether.errors import Forbidden, Unauthorized
from tether.gateway.http_errors import error_response
from tether.gateway.metrics import CONTENT_TYPE, GatewayMetrics

__all__ = ["MetricsAccess", "MetricsEndpoint"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(remote: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not remote:
        return None
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return addr


class MetricsAccess:
    """Decides a ``/metrics`` request: ``ok``, ``unauthorized`` or ``forbidden``."""

    def __init__(self, networks: Sequence[str], token: str | None) -> None:
        self.networks: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.token = token

    def decide(self, remote: str | None, authorization: str) -> str:
        addr = _address(remote)
        if addr is not None and any(addr in net for net in self.networks):
            return "ok"
        if self.token is None:
            return "forbidden"
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return "ok"
        return "unauthorized"


class MetricsEndpoint:
    """``GET /metrics``: Prometheus text for those :class:`MetricsAccess` lets in."""

    def __init__(self, access: MetricsAccess, metrics: GatewayMetrics) -> None:
        self.access = access
        self.metrics = metrics

    async def handle(self, request: web.Request) -> web.Response:
        verdict = self.access.decide(request.remote, request.headers.get("Authorization", ""))
        if verdict == "unauthorized":
            self.metrics.refused.labels("http", "metrics_unauthorized").inc()
            return error_response(
                Unauthorized("metrics need the metrics token from this address"),
                headers={"WWW-Authenticate": 'Bearer realm="tether-metrics"'},
            )
        if verdict == "forbidden":
            self.metrics.refused.labels("http", "metrics_forbidden").inc()
            return error_response(
                Forbidden(
                    "metrics are served to gateway.metrics_networks only (loopback by default); "
                    "set gateway.metrics_token to scrape from elsewhere"
                )
            )
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
