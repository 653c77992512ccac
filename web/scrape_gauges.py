"""The gauges GET /metrics reads at scrape time, for one app: inbox backlog and
queue depth per Celery queue (services/backlog.py), pending webhook deliveries."""

from __future__ import annotations

from flask import Flask

from adapters.metrics import ScrapeGauge, ScrapeGauges
from adapters.redis_client import make_redis
from adapters.resources import Resources
from services.backlog import inbox_backlog, queue_depths
from services.webhooks.delivery import pending_deliveries

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
    return gauges
