"""The stand-ins' deliveries whose task message was lost, sent again (dev and test only).

A real provider keeps its retry queue to itself: whatever happens to our Redis, WeChat
Pay still retries its notification. Our stand-ins keep the state of each delivery in
their own rows (sandbox_deliveries, standin_notifications), but the "call me again at"
is a Celery message on our broker; a Redis that loses its data (restarted without
persistence) would leave those rows `pending` for ever, something no real provider
does. This sweep (the task standins.resume_deliveries, on beat's schedule only where the
stand-ins are mounted) finds pending rows overdue by `older_than_seconds` and untouched
as long, and sends their delivery task again.

A second message for a row is harmless: an attempt claims its slot in the row (the next
one is due only after the backoff), so a duplicate only reschedules itself.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func

from adapters.resources import Resources
from services.resend import send_again
from standins.models import StandinNotification
from standins.notifications import DELIVER_TASK as NOTIFICATION_TASK
from standins.sandbox.delivery import DELIVER_TASK as SANDBOX_TASK
from standins.sandbox.models import SandboxDelivery

log = logging.getLogger(__name__)

RESUME_TASK = "standins.resume_deliveries"
OVERDUE_SECONDS = 60
BATCH_SIZE = 500


def resume_lost_deliveries(res: Resources, *,
                           older_than_seconds: float = OVERDUE_SECONDS) -> dict[str, int]:
    """{"sandbox": n, "notifications": m}: how many delivery tasks were sent again."""
    return {"sandbox": _resume(res, SandboxDelivery, SANDBOX_TASK, older_than_seconds),
            "notifications": _resume(res, StandinNotification, NOTIFICATION_TASK,
                                     older_than_seconds)}


def _resume(res: Resources, model: Any, task: str, older_than_seconds: float) -> int:
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, max(older_than_seconds, 0.0))
    sent = send_again(res, model, task, None, BATCH_SIZE, model.status == "pending",
                      model.not_before < cutoff, model.updated_at < cutoff).changed
    if sent:
        log.info("stand-ins: %s sent again for %d overdue deliveries", task, sent)
    return sent
