"""GET /metrics: Prometheus text exposition (prometheus-client), one registry per app.

fsgen_http_requests_total{route, method, status}     requests answered, by route template
fsgen_http_request_duration_seconds{route}            latency histogram, by route template
fsgen_cache_hits_total / fsgen_cache_misses_total     the results cache
fsgen_cache_shared_total                              requests given the answer of an identical one in flight
fsgen_staged_shards                                   shards staged next to the warehouse, not yet in it
fsgen_ingested_shards_total / fsgen_ingested_events_total   moved in by this server's ingester
fsgen_ingest_failures_total{kind}                     failed ingest passes and quarantined shards
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import require_token, strict_query
from warehouse.settings import staging_dir
from warehouse.staging import staged_shard_count

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ServerState(Collector):
    """Figures read at scrape time from the app: its cache, its ingester, the staging folder."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        state = self.app.state  # type: ignore[attr-defined]
        cache, ingester = state.cache, state.ingester
        yield CounterMetricFamily("fsgen_cache_hits", "answers served from the results cache", cache.hits)
        yield CounterMetricFamily("fsgen_cache_misses", "answers the cache did not hold", cache.misses)
        yield CounterMetricFamily(
            "fsgen_cache_shared", "requests given the answer of an identical one in flight", cache.shared
        )
        staged = staged_shard_count(staging_dir(state.settings.warehouse))
        yield GaugeMetricFamily("fsgen_staged_shards", "staged shards waiting to be ingested", staged)
        total = ingester.total if ingester is not None else None
        yield CounterMetricFamily(
            "fsgen_ingested_shards", "shards this server ingested", total.shards if total else 0
        )
        yield CounterMetricFamily(
            "fsgen_ingested_events", "token events this server ingested", total.events if total else 0
        )
        failures = CounterMetricFamily(
            "fsgen_ingest_failures", "failed ingest passes and quarantined shards", labels=["kind"]
        )
        failures.add_metric(["pass"], ingester.failed_passes if ingester is not None else 0)
        failures.add_metric(["quarantined"], len(total.quarantined) if total else 0)
        yield failures


class Metrics:
    """The app's registry and its request metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fsgen_http_requests", "requests answered", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "fsgen_http_request_duration_seconds", "seconds to answer", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(_ServerState(app))


MAX_PATHS = 10_000  # paths remembered for labelling cached answers


class _RouteLabels:
    """The route template of a request (`/v1/runs/{run_id}`): the one routing recorded in its scope, or,
    for an answer from the response cache (never routed), the one its path was routed to before (a
    cached answer was routed once); `unmatched` for neither (a 404 of an unknown path)."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, scope: Scope) -> str:
        route = getattr(scope.get("route"), "path", None)
        if route is None:
            return self._seen.get(scope["path"], "unmatched")
        if len(self._seen) >= MAX_PATHS:
            self._seen.clear()
        self._seen[scope["path"]] = str(route)
        return str(route)


class MetricsMiddleware:
    """Counts and times every HTTP request (outermost, so cached answers are counted too)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.route_label = _RouteLabels()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = self.route_label(scope)
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()


router = APIRouter(include_in_schema=False)


@router.get("/metrics", dependencies=[Depends(strict_query), Depends(require_token)])
def get_metrics(request: Request) -> Response:
    """Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
