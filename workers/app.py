"""The Celery application run by `celery -A workers.app worker|beat|flower`."""

from __future__ import annotations

from adapters.celery_app import make_celery
from adapters.providers.registry import build_registry
from beat_schedule import build_beat_schedule
from config import Settings

settings = Settings.from_env()
# Every routed provider's keys are checked at start (ConfigError names the variable);
# each pool process builds its own registry again after the fork (workers/runtime.py).
build_registry(settings, settings.payment_providers)
celery = make_celery(settings)
celery.conf.beat_schedule = build_beat_schedule(settings)
# One module per queue's tasks; each task takes ids, calls one service, decides retries.
celery.conf.include = [
    "workers.tasks.callbacks",
    "workers.tasks.payments",
    "workers.tasks.maintenance",
    "workers.tasks.standins",
    "workers.tasks.refunds",
    "workers.tasks.webhooks",
]

import workers.broker_setup  # noqa: E402, F401 - RabbitMQ: every work queue declared first
import workers.metrics_endpoint  # noqa: E402, F401 - zeroed series; /metrics if configured
import workers.task_logging  # noqa: E402, F401 - JSON logs, each task's ids in its lines
import workers.task_metrics  # noqa: E402, F401 - connects the metrics signal handlers
