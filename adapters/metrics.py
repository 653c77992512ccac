"""Prometheus metrics shared by web and worker processes.

With PROMETHEUS_MULTIPROC_DIR set (as `make up` does), every process writes its
samples to files there and GET /metrics aggregates them, so the worker pool's
figures reach the same scrape as the web's.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

CALLBACKS = Counter("payments_callbacks_total",
                    "Provider callbacks answered, by provider and outcome", ["provider", "outcome"])
CALLBACK_LATENCY = Histogram("payments_callback_response_seconds",
                             "Time to answer a provider callback", ["provider"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
TASK_DURATION = Histogram("payments_task_seconds", "Celery task run time", ["task"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
TASK_FAILURES = Counter("payments_task_failures_total", "Celery task failures", ["task"])


def render_latest() -> tuple[bytes, str]:
    """The exposition text: every process's samples in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
