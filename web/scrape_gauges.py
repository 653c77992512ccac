"""The gauges GET /metrics reads at scrape time, for one app: inbox backlog and the
age of its oldest callback, queue depth per Celery queue (services/backlog.py),
readiness (the checks of GET /readyz, 1 or 0 each), and pending webhook deliveries."""

from __future__ import annotations

from flask import Flask

from adapters.amqp_broker import AmqpBroker
from adapters.celery_app import QUEUES, is_amqp
from adapters.metrics import ScrapeGauge, ScrapeGauges
from adapters.redis_client import make_redis
from adapters.resources import Resources
from services.backlog import inbox_backlog, oldest_received_age, queue_depths
from services.webhooks.delivery import pending_deliveries
from web.readiness import readiness_checks

_EXTENSION = "payments_scrape_gauges"


def scrape_gauges(app: Flask, res: Resources) -> ScrapeGauges:
    """Built once per app (it owns a connection to the broker)."""
    gauges = app.extensions.get(_EXTENSION)
    if gauges is None:
        gauges = ScrapeGauges(_gauges(res))
        app.extensions[_EXTENSION] = gauges
    return gauges


def _gauges(res: Resources) -> list[ScrapeGauge]:
    gauges = [ScrapeGauge("payments_callback_inbox_backlog",
                          "Provider callbacks stored but not yet processed", (),
                          lambda: {(): float(inbox_backlog(res))}),
              ScrapeGauge("payments_callback_inbox_oldest_age_seconds",
                          "Seconds the oldest callback still received has waited (0: none)",
                          (), lambda: {(): oldest_received_age(res)}),
              ScrapeGauge("payments_ready",
                          "The checks of GET /readyz: 1 ok, 0 unavailable", ("check",),
                          lambda: {(check,): float(result == "ok")
                                   for check, result in readiness_checks(res).items()}),
              ScrapeGauge("payments_webhook_deliveries_pending",
                          "Merchant webhook deliveries not yet delivered nor failed", (),
                          lambda: {(): float(pending_deliveries(res))})]
    broker_url = res.settings.broker_url
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        broker = make_redis(broker_url)
        gauges.append(ScrapeGauge(
            "payments_queue_depth", "Messages waiting in a Celery queue on the broker",
            ("queue",),
            lambda: {(queue,): float(n) for queue, n in queue_depths(broker).items()}))
    elif is_amqp(broker_url):
        # RabbitMQ: ready messages per queue over AMQP (adapters/amqp_broker.py).
        gauges.append(ScrapeGauge(
            "payments_queue_depth", "Messages waiting in a Celery queue on the broker",
            ("queue",), lambda: {(queue,): float(n) for queue, n in amqp_depths(res).items()}))
    return gauges


def amqp_depths(res: Resources) -> dict[str, int]:
    broker = res.broker
    assert isinstance(broker, AmqpBroker)
    return broker.queue_depths(QUEUES)
