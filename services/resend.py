"""Sending again the tasks whose message was lost (DESIGN.md §7): the two resend sweeps.

A task is sent after its transaction commits (adapters/db.py); a broker that is down
at that moment loses the message, and nothing else would ever send it:
- a refund still `pending` with no provider refund: `refunds.execute` never ran, or its
  retries ran out while the provider was down (maintenance.resend_refunds);
- a payment `processing` with no provider payment (`pay` accepted it): `payments.initiate`
  never ran, or its retries ran out (maintenance.resend_payment_starts);
- a refund `processing` (the provider accepted it) whose outcome never came: its
  callback was lost for good, so the provider is asked (refunds.check, sent by
  maintenance.check_refunds).
Both tasks are idempotent at the provider (the refund's id; the payment's own
idempotency key), so a second message is harmless. A row is only sent again once it
has been quiet for a while (its task may still be retrying), and each send stamps its
updated_at, so the next one for it is at least that long later.

Each batch is one short transaction: up to `batch_size` quiet rows are picked
`FOR UPDATE SKIP LOCKED` (a worker writing one right now is left alone) and stamped;
their messages go out after the commit. A send that fails (the broker still down)
ends the run; those rows are tried again one quiet period later.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select, update

from adapters.resources import Resources
from domain.models import Payment, Refund
from domain.statuses import PaymentStatus, RefundStatus
from services.expiry import SweepTally
from services.payment_start import INITIATE_TASK
from services.refunds import CHECK_TASK, EXECUTE_TASK

log = logging.getLogger(__name__)

# Longer than each task's own retry schedule takes at its most likely (workers/tasks):
# a message still being retried is rarely doubled, a lost one waits no longer than this.
REFUND_QUIET_SECONDS = 600
START_QUIET_SECONDS = 180
# Providers confirm a refund within minutes and retry their callback for hours: half an
# hour of silence after the provider accepted it means the confirmation is not coming.
REFUND_CHECK_QUIET_SECONDS = 1800
BATCH_SIZE = 500


def resend_lost_refunds(res: Resources, *, older_than_seconds: float = REFUND_QUIET_SECONDS,
                        batch_size: int = BATCH_SIZE,
                        deadline: float | None = None) -> SweepTally:
    """Refunds pending (never accepted by the provider) and quiet -> refunds.execute again.

    A refund whose payment has no provider payment is left out: there is nothing to ask
    the provider about, and refunds.execute leaves it to an operator."""
    has_provider_payment = exists().where(Payment.id == Refund.payment_id,
                                          Payment.provider_reference.is_not(None))
    return send_again(res, Refund, EXECUTE_TASK, deadline, batch_size,
                      Refund.status == RefundStatus.PENDING.value,
                      Refund.provider_refund_id.is_(None),
                      Refund.updated_at < _ago(older_than_seconds),
                      has_provider_payment)


def check_processing_refunds(res: Resources, *,
                             older_than_seconds: float = REFUND_CHECK_QUIET_SECONDS,
                             batch_size: int = BATCH_SIZE,
                             deadline: float | None = None) -> SweepTally:
    """Refunds processing (accepted by the provider), quiet and not flagged for review ->
    refunds.check, which asks the provider how the refund stands and applies a final
    answer. A flagged refund waits for a person (services/review.py), not for a check."""
    return send_again(res, Refund, CHECK_TASK, deadline, batch_size,
                      Refund.status == RefundStatus.PROCESSING.value,
                      Refund.provider_refund_id.is_not(None),
                      Refund.needs_review.is_(False),
                      Refund.updated_at < _ago(older_than_seconds))


def resend_lost_payment_starts(res: Resources, *,
                               older_than_seconds: float = START_QUIET_SECONDS,
                               batch_size: int = BATCH_SIZE,
                               deadline: float | None = None) -> SweepTally:
    """Payments processing with no provider payment and quiet -> payments.initiate again.

    A payment past its expires_at is left to the expiry sweep, which closes it."""
    return send_again(res, Payment, INITIATE_TASK, deadline, batch_size,
                      Payment.status == PaymentStatus.PROCESSING.value,
                      Payment.provider_reference.is_(None),
                      Payment.updated_at < _ago(older_than_seconds),
                      Payment.expires_at > func.now())


def _ago(seconds: float) -> ColumnElement[Any]:
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, max(seconds, 0.0))


def send_again(res: Resources, model: Any, task: str, deadline: float | None,
               batch_size: int, *quiet: ColumnElement[bool]) -> SweepTally:
    """`task`(id) for every row of `model` (an id and an updated_at column) that `quiet`
    picks, each row stamped first so the next run leaves it alone for another quiet
    period; stops at the deadline or when the broker refuses a send."""
    tally, after_id = SweepTally(), 0  # a keyset cursor: each row once per run
    while deadline is None or time.monotonic() < deadline:
        picked = (select(model.id).where(model.id > after_id, *quiet).order_by(model.id)
                  .limit(batch_size).with_for_update(skip_locked=True, of=model))
        with res.uow() as uow:
            ids = sorted(uow.session.execute(
                update(model).where(model.id.in_(picked.scalar_subquery()))
                .values(updated_at=func.now()).returning(model.id)
                .execution_options(synchronize_session=False)).scalars())
            uow.commit()
        if not ids:
            return tally
        tally.batches, after_id = tally.batches + 1, ids[-1]
        for row_id in ids:
            if not res.queue.send(task, row_id):
                log.warning("%s: broker unavailable after %d sent; the rest are sent again "
                            "on a later run", task, tally.changed)
                tally.complete = False
                return tally
            tally.changed += 1
    tally.complete = False
    return tally
