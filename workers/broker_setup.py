"""On RabbitMQ, every work queue and its exchange exist before the worker consumes.

Celery's native delayed delivery (adapters/celery_app.py) binds *every* queue the app
knows to the delayed-delivery exchange when a worker starts, not only the queues that
worker consumes; a queue whose exchange nobody has declared yet makes that binding fail
("no exchange 'payments'"), logged as an error at each start and reconnect, and a delayed
message for it would have no route. So each worker declares all of them first (quorum
queues, durable topic exchanges: declaring again what exists changes nothing).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init

from adapters.celery_app import is_amqp

log = logging.getLogger(__name__)

CONNECT_RETRIES = 3


@worker_init.connect
def declare_work_queues(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if app is None or not is_amqp(str(app.conf.broker_url)):
        return
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=CONNECT_RETRIES)
            channel = conn.default_channel
            for queue in app.conf.task_queues:
                queue.bind(channel).declare()
    except Exception as exc:  # the worker's own connection retries carry on from here
        log.warning("could not declare the work queues on the broker yet: %s", exc)
