"""The node's Prometheus metrics (Garage: src/garage/metrics.rs, the ``metrics`` of each crate).

:class:`NodeMetrics` owns one ``prometheus_client`` registry per node. The API servers are
wrapped with :meth:`NodeMetrics.instrument`, which counts requests by API, endpoint and
status and records their durations; everything else is read from the node's own
counters when ``/metrics`` is scraped (:meth:`NodeMetrics.render`), so the lower layers
keep plain counters and pay nothing per operation for Prometheus.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from garage_api.http import Handler, Request, Response
    from garage_model import Garage

__all__ = ["CONTENT_TYPE", "NodeMetrics"]

#: The media type of :meth:`NodeMetrics.render`'s text.
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


class NodeMetrics:
    """The metrics of one node.

    Args:
        garage: the node whose counters are exported.
    """

    def __init__(self, garage: Garage) -> None:
        self._garage = garage
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "api_requests",
            "API requests answered, by API, endpoint and status.",
            ["api", "endpoint", "status"],
            registry=self.registry,
        )
        self._durations = Histogram(
            "api_request_duration_seconds",
            "Time to answer an API request (to the response headers), by API and endpoint.",
            ["api", "endpoint"],
            registry=self.registry,
        )

    def instrument(self, api: str, handler: Handler) -> Handler:
        """``handler``, counting and timing each request under the API name ``api``."""

        async def instrumented(request: Request) -> Response:
            start = time.perf_counter()
            response = await handler(request)
            endpoint = request.method  # TODO(metrics helper): the routed endpoint's name
            elapsed = time.perf_counter() - start
            self._requests.labels(api, endpoint, str(response.status)).inc()
            self._durations.labels(api, endpoint).observe(elapsed)
            return response

        return instrumented

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
