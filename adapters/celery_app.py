"""The Celery application and its settings (DESIGN.md §8).

Producers (the web) and consumers (workers) build the same app from Settings;
building it connects to nothing.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from adapters import kombu_redis
from config import Settings

# webhooks: merchant deliveries, on a queue (and worker) of their own, so a receiver that
# hangs for its whole timeout never holds up a callback being applied (DESIGN.md §9).
QUEUES = ("callbacks", "payments", "maintenance", "webhooks")

TASK_ROUTES = {
    "callbacks.*": {"queue": "callbacks"},
    "payments.*": {"queue": "payments"},
    "refunds.*": {"queue": "payments"},
    "maintenance.*": {"queue": "maintenance"},
    "webhooks.*": {"queue": "webhooks"},
    "sandbox.*": {"queue": "payments"},  # the sandbox provider's callback deliveries
    "standins.*": {"queue": "payments"},  # the provider doubles' notifications
}

# The longest task (a sweep batch loop) is capped well below this, so a message
# is only redelivered by the broker when its worker really is gone.
VISIBILITY_TIMEOUT_SECONDS = 900
TASK_TIME_LIMIT_SECONDS = 600


def make_celery(settings: Settings) -> Celery:
    # kombu's Redis transport with its restore-on-a-closed-connection crash worked
    # around (adapters/kombu_redis.py, celery/kombu#582): a worker survives Redis vanishing.
    kombu_redis.register()
    app = Celery("payments", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT_SECONDS,
        task_soft_time_limit=TASK_TIME_LIMIT_SECONDS - 30,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # A publish to a dead broker must fail within a second or two: the
        # callback is already stored and the redelivery sweep will send it.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2,
                                   "interval_step": 0.2, "interval_max": 0.5},
        worker_send_task_events=True,
        # No task-sent events: Flower learns of a task from the worker's task-received
        # event (name and arguments alike); a sent event is one more Redis publish on
        # every callback's ingest (B1 in BENCHMARKS.md).
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="payments",
        task_routes=TASK_ROUTES,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
    )
    return app
