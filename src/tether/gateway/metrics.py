"""Prometheus metrics of one gateway (its own registry, so tests can run several)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tether import __version__
from tether.protocol.methods import METHODS

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # type: ignore[no-untyped-call] # the *_created series only add noise to every scrape
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1,
    5,
    30,
)


class GatewayMetrics:
    """All gateway metrics. Method labels are limited to the method table (else ``unknown``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tether_rpc_requests",
            "RPC requests handled, by outcome code",
            ["method", "role", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "tether_rpc_request_duration_seconds",
            "Time spent handling RPC requests",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "tether_connections", "Open connections", ["transport"], registry=r
        )
        self.accepted = Counter(
            "tether_connections_accepted", "Connections accepted", ["transport"], registry=r
        )
        self.refused = Counter(
            "tether_connections_refused",
            "Connections refused before use",
            ["transport", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tether_rate_limited",
            "Requests answered 429, by endpoint and which limit was hit",
            ["endpoint", "scope"],
            registry=r,
        )
        self.shed = Counter(
            "tether_http_connections_shed",
            "TCP connections closed before completing a request, by reason",
            ["reason"],
            registry=r,
        )
        self.pending = Gauge(
            "tether_http_connections_pending",
            "TCP connections that have not completed a request yet",
            registry=r,
        )
        self.tcp_connections = Gauge(
            "tether_http_connections", "Open TCP connections (any state)", registry=r
        )
        self.fd_limit = Gauge(
            "tether_open_files_limit", "The open-file soft limit the gateway runs with", registry=r
        )
        self.closed = Counter(
            "tether_connections_closed",
            "Connections closed, by reason",
            ["transport", "reason"],
            registry=r,
        )
        self.runs_created = Counter("tether_runs_created", "Runs created", registry=r)
        self.runs_finished = Counter(
            "tether_runs_finished",
            "Runs that reached a terminal state",
            ["state", "reason"],
            registry=r,
        )
        self.runs_active = Gauge(
            "tether_runs_active", "Runs driven by this gateway now", registry=r
        )
        self.leases_lost = Counter(
            "tether_leases_lost", "Runs this gateway stopped because its lease was lost", registry=r
        )
        self.retention_runs = Counter(
            "tether_retention_runs", "Retention passes", ["outcome"], registry=r
        )
        self.retention_deleted = Counter(
            "tether_retention_deleted", "Rows removed by retention", ["kind"], registry=r
        )
        self.subscriptions = Gauge("tether_subscriptions", "Live event subscriptions", registry=r)
        self.info = Gauge("tether_build_info", "Build information", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self._req_children: dict[tuple[str, str, str], Any] = {}
        self._lat_children: dict[str, Any] = {}

    def observe_request(self, method: str, role: str, seconds: float, code: str) -> None:
        if method not in METHODS:
            method = "unknown"
        key = (method, role, code)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(method, role, code)
        child.inc()
        lat = self._lat_children.get(method)
        if lat is None:
            lat = self._lat_children[method] = self.latency.labels(method)
        lat.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
