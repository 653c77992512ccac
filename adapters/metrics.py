"""Prometheus metrics shared by web and worker processes.

With PROMETHEUS_MULTIPROC_DIR set (as `make up` does), every process writes its
samples to files there and GET /metrics aggregates them, so the worker pool's
figures reach the same scrape as the web's. Gauges that describe the system
rather than one process (inbox backlog, queue depth) are read at scrape time by
the web process instead (`ScrapeGauges`, passed to `render_latest`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

CALLBACKS = Counter("payments_callbacks_total",
                    "Provider callbacks by provider and outcome: received, verified, rejected "
                    "(bad signature), invalid, duplicate, stored (web); processed, unmatched, "
                    "refused (by the settlement rules), failed (worker)",
                    ["provider", "outcome"])
SIGNATURE_FAILURES = Counter("payments_callback_signature_failures_total",
                             "Provider callbacks refused for their signature, by reason",
                             ["provider", "reason"])
CALLBACK_LATENCY = Histogram("payments_callback_response_seconds",
                             "Time to answer a provider callback", ["provider"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
PROVIDER_CALLS = Counter("payments_provider_calls_total",
                         "Calls to payment providers by provider, call and outcome: ok, "
                         "rejected (a definite no), unavailable (no answer, 5xx), unverified "
                         "(an answer whose signature did not verify: not trusted)",
                         ["provider", "call", "outcome"])
PAYMENTS_FINAL = Counter("payments_payments_final_total",
                         "Payments reaching a final status (counted at commit), by status",
                         ["status"])
EXPIRATIONS = Counter("payments_expirations_total",
                      "Payments and orders expired (counted at commit)", ["kind"])
REFUNDS = Counter("payments_refunds_total",
                  "Refunds by outcome: requested, succeeded, failed (counted at commit)",
                  ["outcome"])
TASK_DURATION = Histogram("payments_task_seconds", "Celery task run time", ["task"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
TASK_FAILURES = Counter("payments_task_failures_total", "Celery task failures", ["task"])

# Final payment statuses (domain.statuses values) counted by PAYMENTS_FINAL.
FINAL_PAYMENT_STATUSES = frozenset({"succeeded", "failed", "cancelled", "expired", "refunded"})

_PENDING_KEY = "metrics_on_commit"


def count_on_commit(session: Session, counter: Any, amount: float = 1) -> None:
    """Increment `counter` (a labelled child) once `session`'s transaction commits; a
    rollback forgets it. So a counted transition is one that really happened."""
    if amount:
        session.info.setdefault(_PENDING_KEY, []).append((counter, amount))


def count_payment_final(session: Session, status: str, amount: float = 1) -> None:
    """A payment (or `amount` of them, for a set-based sweep) moved to `status`."""
    if status in FINAL_PAYMENT_STATUSES:
        count_on_commit(session, PAYMENTS_FINAL.labels(status), amount)
    if status == "expired":
        count_on_commit(session, EXPIRATIONS.labels("payment"), amount)


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for counter, amount in session.info.pop(_PENDING_KEY, ()):
        counter.inc(amount)


@event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended without a commit
        session.info.pop(_PENDING_KEY, None)


@dataclass(frozen=True)
class ScrapeGauge:
    """A gauge computed when scraped: `read()` returns {label values: value}."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    read: Callable[[], dict[tuple[str, ...], float]]


class ScrapeGauges(Collector):
    """Gauges read at scrape time. One that cannot be read (database or broker down) is
    left out of this scrape, logged; the rest of /metrics is still served."""

    def __init__(self, gauges: Iterable[ScrapeGauge]) -> None:
        self._gauges = list(gauges)

    def collect(self) -> Iterator[Metric]:
        for gauge in self._gauges:
            try:
                values = gauge.read()
            except Exception as exc:  # any driver error: omit the gauge, keep the scrape
                log.warning("metric %s not read: %s", gauge.name, exc)
                continue
            family = GaugeMetricFamily(gauge.name, gauge.documentation,
                                       labels=list(gauge.labels))
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family


class _Union(Collector):
    """Several collectors as one registry-like object for generate_latest."""

    def __init__(self, collectors: Iterable[Any]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render_latest(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text: every process's samples in multiprocess mode (this
    process's otherwise), plus `extra` collectors read now, in this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        for collector in extra:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(_Union([REGISTRY, *extra])), CONTENT_TYPE_LATEST
