"""The Celery application and its settings (DESIGN.md §8).

Producers (the web) and consumers (workers) build the same app from Settings;
building it connects to nothing.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

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


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
# The shortest delay RabbitMQ's native delayed delivery can express: Celery 5.5+ routes a
# countdown through the celery_delayed_* exchanges by whole seconds (int(countdown)), and a
# countdown that rounds to 0 is refused (kombu's calculate_routing_key raises ValueError),
# which would fail a retry of under a second (the callbacks' first backoff is 0.5-1 s).
MIN_AMQP_COUNTDOWN_SECONDS = 1.0


def is_amqp(broker_url: str) -> bool:
    return broker_url.startswith(AMQP_SCHEMES)


def work_queues(broker_url: str) -> list[Queue]:
    """Our queues as the broker needs them.

    Redis: plain queues, as always. RabbitMQ: quorum queues (replicated, durable, their
    messages survive a node's loss; no priorities, which we never use), each behind a
    topic exchange of its own name: Celery's native delayed delivery (the only way a
    countdown retry is not held unacked in a worker on quorum queues) forwards a due
    message to the queue's exchange by routing key, and cannot with direct exchanges.
    """
    if not is_amqp(broker_url):
        return [Queue(name) for name in QUEUES]
    return [Queue(name, Exchange(name, type="topic", durable=True), routing_key=name,
                  durable=True, queue_arguments={"x-queue-type": "quorum"})
            for name in QUEUES]


def _transport_options(broker_url: str) -> dict[str, Any]:
    if is_amqp(broker_url):
        # Publisher confirms: a send returns once RabbitMQ has the message (on a
        # quorum queue: replicated to a majority), and a refused one raises instead of
        # vanishing, so TaskQueue.send's False (and the sweeps behind it) means what it says.
        return {"confirm_publish": True}
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }


class PaymentsCelery(Celery):
    """Celery with one broker difference kept away from the tasks: on RabbitMQ a
    countdown under a second is sent as one second (MIN_AMQP_COUNTDOWN_SECONDS). Every
    send goes through send_task (Task.retry and apply_async too)."""

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,
                  countdown: float | None = None, eta: Any = None, **options: Any) -> Any:
        if countdown is not None and 0 < countdown < MIN_AMQP_COUNTDOWN_SECONDS and \
                is_amqp(str(self.conf.broker_url)):
            countdown = MIN_AMQP_COUNTDOWN_SECONDS
        return super().send_task(name, args, kwargs, countdown, eta, **options)


def make_celery(settings: Settings) -> Celery:
    # kombu's Redis transport with its restore-on-a-closed-connection crash worked
    # around (adapters/kombu_redis.py, celery/kombu#582): a worker survives Redis vanishing.
    kombu_redis.register()
    app = PaymentsCelery("payments", broker=settings.broker_url, set_as_current=False)
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
        broker_transport_options=_transport_options(settings.broker_url),
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
        task_queues=work_queues(settings.broker_url),
        # RabbitMQ: quorum queues are detected (the default, said here because it
        # matters): no global QoS, which quorum queues refuse, and countdowns through
        # native delayed delivery, declared as quorum queues too.
        worker_detect_quorum_queues=True,
        broker_native_delayed_delivery_queue_type="quorum",
        task_default_queue="payments",
        task_routes=TASK_ROUTES,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
    )
    return app
