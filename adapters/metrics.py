"""Prometheus metrics shared by web and worker processes.

With PROMETHEUS_MULTIPROC_DIR set (as `make up` does), every process writes its
samples to files there and GET /metrics aggregates them, so the worker pool's
figures reach the same scrape as the web's. Gauges that describe the system
rather than one process (inbox backlog, queue depth) are read at scrape time by
the web process instead (`ScrapeGauges`, passed to `render_latest`).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
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
                    "(bad signature), invalid, too_large (413), duplicate, stored, not_stored "
                    "(web); processed, unmatched, refused (by the settlement rules), error, "
                    "failed (worker)",
                    ["provider", "outcome"])
SIGNATURE_FAILURES = Counter("payments_callback_signature_failures_total",
                             "Provider callbacks refused for their signature, by reason",
                             ["provider", "reason"])
CALLBACK_LATENCY = Histogram("payments_callback_response_seconds",
                             "Time to answer a provider callback", ["provider"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
# The payment funnel: created -> started (processing) -> final (below).
PAYMENTS_CREATED = Counter("payments_payments_created_total",
                           "Payment attempts created (counted at commit)")
PAYMENTS_STARTED = Counter("payments_payments_started_total",
                           "Payments moved to processing: the provider gave a pay URL "
                           "(counted at commit)")
PROVIDER_CALLS = Counter("payments_provider_calls_total",
                         "Calls to payment providers by provider, call and outcome: ok, "
                         "rejected (a definite no), unavailable (no answer, 5xx), unverified "
                         "(an answer whose signature did not verify: not trusted)",
                         ["provider", "call", "outcome"])
PAYMENTS_FINAL = Counter("payments_payments_final_total",
                         "Payment attempts reaching an outcome (counted at commit): "
                         "succeeded, failed, cancelled, expired", ["status"])
LATE_SUCCESSES = Counter("payments_payments_late_succeeded_total",
                         "Payments that succeeded after being counted failed, cancelled or "
                         "expired (late_payment_received)")
PAYMENTS_REFUNDED = Counter("payments_payments_refunded_total",
                            "Succeeded payments that were then refunded in full")
EXPIRATIONS = Counter("payments_expirations_total",
                      "Payments and orders expired (counted at commit)", ["kind"])
REFUNDS = Counter("payments_refunds_total",
                  "Refunds by outcome: requested, succeeded, failed (counted at commit)",
                  ["outcome"])
REFUNDS_FLAGGED = Counter("payments_refunds_flagged_total",
                          "Refunds flagged for review (counted at commit), by reason: "
                          "refund_abnormal, amount_mismatch, refund_overdue", ["reason"])
WALLET_ENTRIES = Counter("payments_wallet_entries_total",
                         "Wallet ledger entries written (counted at commit), by kind: credit, "
                         "payment, refund, topup", ["kind"])
WALLET_REFUSALS = Counter("payments_wallet_refusals_total",
                          "Wallet movements refused, by code: insufficient_balance (a balance "
                          "payment), topup_already_spent (a top-up's refund)", ["code"])
WEBHOOK_DELIVERIES = Counter("payments_webhook_deliveries_total",
                             "Merchant webhook delivery attempts by outcome: delivered (a 2xx), "
                             "retried (failed, tried again later), failed (the retry schedule "
                             "ran out), skipped (its endpoint was disabled)", ["outcome"])
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "payments_webhook_delivery_latency_seconds",
    "From an event's commit to its delivery's 2xx (retries included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400))
WEBHOOK_ENDPOINTS_DISABLED = Counter("payments_webhook_endpoints_disabled_total",
                                     "Webhook endpoints disabled after failing every "
                                     "delivery for 3 days")
RECONCILIATION_MISMATCHES = Counter(
    "payments_reconciliation_mismatches_total",
    "Discrepancies the daily reconciliation found, each counted once per provider day: "
    "missing_here (applied), unknown_here, missing_at_provider, amount_mismatch, "
    "currency_mismatch, transaction_id_mismatch, status_mismatch",
    ["provider", "kind"])
RECONCILIATION_RUNS = Counter("payments_reconciliation_runs_total",
                              "Reconciliation runs by provider and outcome: succeeded, failed",
                              ["provider", "outcome"])
TASK_DURATION = Histogram("payments_task_seconds", "Celery task run time", ["task"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
TASK_FAILURES = Counter("payments_task_failures_total", "Celery task failures", ["task"])
ENQUEUE_FAILURES = Counter("payments_enqueue_failures_total",
                           "Task messages that could not be published (broker unreachable); "
                           "the work is stored and a sweep sends it again", ["task"])
AFTER_COMMIT_FAILURES = Counter("payments_after_commit_failures_total",
                                "After-commit hooks that raised (the transaction is committed)")

# A sweep that ran to its end (not one skipped because another run held its lock), so
# an alert can tell "beat or the lock is stuck" from "the sweep ran and found nothing".
# "max" across processes: the newest completion is what matters, whichever process ran it.
SWEEP_COMPLETED = Gauge("payments_sweep_last_completed_timestamp_seconds",
                        "Unix time the last run of a maintenance sweep finished", ["sweep"],
                        multiprocess_mode="max")
SWEEP_INTERVAL = Gauge("payments_sweep_interval_seconds",
                       "How often beat sends each maintenance sweep", ["sweep"],
                       multiprocess_mode="max")

# Outcomes of payments_callbacks_total. web: received, verified, rejected (bad signature),
# invalid, duplicate, stored, not_stored (database down: 503, the provider retries);
# worker: processed, unmatched, refused, error (an attempt raised; it is retried), failed.
# The calls and outcomes of payments_provider_calls_total (adapters/providers/instrumented.py).
PROVIDER_CALL_KINDS = ("create", "query", "close", "refund", "refund_query")
PROVIDER_CALL_OUTCOMES = ("ok", "rejected", "unavailable", "unverified")
CALLBACK_OUTCOMES = ("received", "verified", "rejected", "invalid", "too_large", "duplicate",
                     "stored", "not_stored", "processed", "unmatched", "refused", "error", "failed")

# The outcomes of a payment attempt (domain.statuses values) counted by PAYMENTS_FINAL.
# "refunded" is not one: it follows a success, which was counted already, and has a
# counter of its own, so succeeded / (all outcomes - late successes) is the success rate.
FINAL_PAYMENT_STATUSES = frozenset({"succeeded", "failed", "cancelled", "expired"})
_ENDED_UNPAID = frozenset({"failed", "cancelled", "expired"})

_PENDING_KEY = "metrics_on_commit"


# The series every callback touches, looked up once per label values: labels() checks and
# locks on every call, and ingest counts three outcomes per callback and times it (B1).
# Bounded: providers are the configured ones (callers check the name first), outcomes fixed.
@cache
def callback_counter(provider: str, outcome: str) -> Counter:
    return CALLBACKS.labels(provider, outcome)


@cache
def callback_latency(provider: str) -> Histogram:
    return CALLBACK_LATENCY.labels(provider)


def count_on_commit(session: Session, counter: Any, amount: float = 1) -> None:
    """Increment `counter` (a labelled child) once `session`'s transaction commits; a
    rollback forgets it. So a counted transition is one that really happened."""
    if amount:
        session.info.setdefault(_PENDING_KEY, []).append((counter, amount))


def count_payment_moved(session: Session, status: str, amount: float = 1,
                        from_status: str | None = None) -> None:
    """A payment moved to `status`: processing counts as the funnel's "started", a final
    status as final."""
    if status == "processing":
        count_on_commit(session, PAYMENTS_STARTED, amount)
    count_payment_final(session, status, amount, from_status)


def count_payment_final(session: Session, status: str, amount: float = 1,
                        from_status: str | None = None) -> None:
    """A payment (or `amount` of them, for a set-based sweep) moved to `status`."""
    if status in FINAL_PAYMENT_STATUSES:
        count_on_commit(session, PAYMENTS_FINAL.labels(status), amount)
    if status == "succeeded" and from_status in _ENDED_UNPAID:
        count_on_commit(session, LATE_SUCCESSES, amount)  # counted twice: say so
    if status == "refunded":
        count_on_commit(session, PAYMENTS_REFUNDED, amount)
    if status == "expired":
        count_on_commit(session, EXPIRATIONS.labels("payment"), amount)


def initialise_series(providers: Iterable[str], tasks: Iterable[str] = ()) -> None:
    """Export 0 for every callback outcome and call outcome of each provider, and for every
    task's failures and failed sends.

    A labelled counter otherwise appears only at its first increment, already at 1, and
    Prometheus' increase() sees nothing move: the first failed callback would not page.
    """
    for provider in providers:
        for outcome in CALLBACK_OUTCOMES:
            CALLBACKS.labels(provider, outcome)
        for call in PROVIDER_CALL_KINDS:
            for outcome in PROVIDER_CALL_OUTCOMES:
                PROVIDER_CALLS.labels(provider, call, outcome)
    for task in tasks:
        TASK_FAILURES.labels(task)
        ENQUEUE_FAILURES.labels(task)


class _Observation:
    """A histogram observation that count_on_commit can hold until the commit."""

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram

    def inc(self, value: float) -> None:
        self._histogram.observe(value)


def observe_on_commit(session: Session, histogram: Any, value: float) -> None:
    """Observe `value` once `session`'s transaction commits (like count_on_commit)."""
    session.info.setdefault(_PENDING_KEY, []).append((_Observation(histogram), value))


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


class _WrittenProcessFiles(Collector):
    """prometheus_client's MultiProcessCollector, over the files that have content.

    A process that has just created its file has not sized it yet, and reading a 0-byte
    file raises: the whole scrape would fail, and Prometheus see the target down. Such a
    file holds no sample yet, so leaving it out loses nothing.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) > 0:
                    files.append(name)
            except OSError:  # gone meanwhile (a process cleaned up after)
                continue
        return prom_multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def exposition(extra: Iterable[Collector] = ()) -> Collector:
    """What a scrape of this process serves: every process's samples in multiprocess
    mode (this process's otherwise), plus `extra` collectors read at scrape time."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        registry = CollectorRegistry()
        registry.register(_WrittenProcessFiles(path))
        for collector in extra:
            registry.register(collector)
        return registry
    return _Union([REGISTRY, *extra])


def render_latest(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text of `exposition(extra)`, read now."""
    return generate_latest(exposition(extra)), CONTENT_TYPE_LATEST
