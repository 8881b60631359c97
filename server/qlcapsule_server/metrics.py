"""Prometheus metrics (prometheus_client), one registry per application so tests can run several."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Sizes(Collector):
    """Catalog sizes, counted when scraped."""

    def __init__(self, sizes: Callable[[], dict[str, int]]) -> None:
        self.sizes = sizes

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily("qlcapsule_catalog_rows", "Rows in the catalog by kind", labels=["kind"])
        for kind, count in self.sizes().items():
            family.add_metric([kind], count)
        yield family


class Metrics:
    def __init__(self, sizes: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qlcapsule_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qlcapsule_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.publishes = Counter(
            "qlcapsule_publishes",
            "Publications by outcome and signature verdict",
            ["outcome", "signature"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "qlcapsule_delivery_status",
            "Delivery status reports by provider and status",
            ["provider", "status"],
            registry=self.registry,
        )
        self.registry.register(_Sizes(sizes))
