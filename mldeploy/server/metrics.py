"""Prometheus metrics of one app (own registry, so two apps in one process never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# A counter's `_created` series doubles every counter's lines and no dashboard reads it (its start time is
# the process's): off, as the Prometheus conventions for client libraries recommend. Process-wide.
disable_created_metrics()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Every prediction request, answered or not: status is the HTTP status; version and route are empty
        # when the request failed before a version was chosen (a bad upload). Error rate of a model or a
        # canary: sum(rate(...{status!~"2.."})) / sum(rate(...)).
        self.requests = Counter("mldeploy_requests", "Prediction requests by model, version, route and HTTP status", ["model", "version", "route", "status"],
                                registry=r)
        self.errors = Counter("mldeploy_request_errors", "Requests answered with an error, by endpoint, model (empty: none), status and error type",
                              ["endpoint", "model", "status", "type"], registry=r)
        self.latency = Histogram("mldeploy_request_seconds", "Request latency, upload to answer", ["model", "version"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("mldeploy_inference_seconds", "Model forward pass", ["model", "version", "role"],
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.shadow_results = Counter("mldeploy_shadow_comparisons", "Shadow comparisons by result (agree, disagree, error)",
                                      ["model", "live", "shadow", "result"], registry=r)
        self.shadow_pending = Gauge("mldeploy_shadow_pending", "Captured requests waiting for the shadow", ["model", "shadow"], registry=r)
        self.captured = Counter("mldeploy_captured", "Requests captured (with their live answer)", ["model"], registry=r)
        self.capture_evicted = Counter("mldeploy_capture_evicted", "Captured requests evicted by the byte budget before the shadow ran",
                                       ["model"], registry=r)
        self.capture_failed = Counter("mldeploy_capture_failed", "Requests that could not be captured (folder full, read-only, gone)",
                                      ["model"], registry=r)
        self.capture_bytes = Gauge("mldeploy_capture_bytes", "Bytes the captured images take", registry=r)
        self.live = Gauge("mldeploy_live_version", "1 for the live version of each served model", ["model", "version"], registry=r)
        self.canary_weight = Gauge("mldeploy_canary_weight_ratio", "Share of clients routed to the canary, 0 to 1", ["model", "version"], registry=r)
        self.rollbacks = Counter("mldeploy_canary_rollbacks", "Automatic canary rollbacks", ["model", "version"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
