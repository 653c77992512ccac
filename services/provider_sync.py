"""Asking providers about processing payments, and applying what they say (DESIGN.md §7).

The janitor (maintenance.sync_pending) and the expiry sweep ask a payment's
provider for its status before they give up on it. The question is asked outside
any transaction or lock. A provider that says "paid" or "failed" tells us what
its lost callback would have: the answer goes through the very settlement a
callback goes through (services/settlement.py), under the same per-payment
Redis lock, with the same row locks, compare-and-set rules, audit events and
order change. So a success found this way and its callback arriving later are
applied once, whichever comes first, and a late success is refunded the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import select

from adapters.locks import LockBusy, payment_lock
from adapters.providers.base import (
    ProviderError,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderStatus,
    ProviderUnavailable,
)
from adapters.resources import Resources
from domain.callback_events import CallbackEvent, CallbackEventType
from domain.models import Payment
from services.callbacks import LOCK_TTL_SECONDS, LOCK_WAIT_SECONDS
from services.callbacks import REFUND_TASK as EXECUTE_TASK
from services.settlement import settle_provider_report

log = logging.getLogger(__name__)

# One batch's questions stop after this long (the rest count as unknown), so a run
# stays within its time budget and lock TTL (services/maintenance.py) even when a
# provider answers slowly.
QUERY_BUDGET_SECONDS = 30.0


class ProviderVerdict(StrEnum):
    """What the provider says about a payment we believe is processing."""

    SUCCEEDED = "succeeded"  # the provider holds the money: apply the success
    FAILED = "failed"        # declined or closed at the provider
    PENDING = "pending"      # still open at the provider (the customer has not paid)
    UNKNOWN = "unknown"      # no answer: no reference yet, an error, a timeout


@dataclass(frozen=True)
class ProviderQuery:
    """What a provider status query needs to find a payment at its provider."""

    payment_id: int
    provider: str
    provider_reference: str | None


@dataclass(frozen=True)
class ProviderAnswer:
    verdict: ProviderVerdict
    transaction_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    paid_at: datetime | None = None  # the provider's time of the success, if it said


UNKNOWN = ProviderAnswer(ProviderVerdict.UNKNOWN)

_VERDICTS = {
    ProviderPaymentStatus.SUCCEEDED: ProviderVerdict.SUCCEEDED,
    ProviderPaymentStatus.FAILED: ProviderVerdict.FAILED,
    ProviderPaymentStatus.CLOSED: ProviderVerdict.FAILED,
    ProviderPaymentStatus.PENDING: ProviderVerdict.PENDING,
}


def query_statuses(res: Resources, queries: Sequence[ProviderQuery], *,
                   budget_seconds: float = QUERY_BUDGET_SECONDS,
                   clock: Callable[[], float] = time.monotonic) -> dict[int, ProviderAnswer]:
    """An answer per payment asked about: UNKNOWN when there was nothing to ask with (no
    provider reference yet) or no answer (an error, a timeout). Payments the time budget
    left unasked are missing, so a caller can tell "no answer" from "not asked".

    A provider that fails to answer once is not asked again in this batch: when it
    is down, each further question would only wait for the same timeout.
    """
    answers: dict[int, ProviderAnswer] = {}
    deadline = clock() + budget_seconds
    unreachable: set[str] = set()
    for query in queries:
        if not query.provider_reference or query.provider in unreachable:
            answers[query.payment_id] = UNKNOWN
            continue
        if clock() >= deadline:
            log.warning("provider status queries: time budget spent; %d payments not "
                        "asked this time", len(queries) - len(answers))
            break
        try:
            status = res.providers.by_name(query.provider).query_status(
                query.provider_reference)
        except ProviderUnavailable as exc:
            log.warning("provider %s did not answer a status query: %s", query.provider, exc)
            unreachable.add(query.provider)
            answers[query.payment_id] = UNKNOWN
            continue
        except (ProviderError, KeyError) as exc:
            log.warning("status query for payment %s failed: %s", query.payment_id, exc)
            answers[query.payment_id] = UNKNOWN
            continue
        answers[query.payment_id] = _answer(status)
    return answers


def _answer(status: ProviderStatus) -> ProviderAnswer:
    verdict = _VERDICTS[status.status]
    if verdict is ProviderVerdict.SUCCEEDED and not status.transaction_id:
        return UNKNOWN  # a success we could not apply: no transaction to record
    return ProviderAnswer(verdict, status.transaction_id, status.amount, status.currency,
                          status.paid_at)


def apply_answer(res: Resources, query: ProviderQuery, answer: ProviderAnswer, *,
                 actor: str) -> str | None:
    """Apply a SUCCEEDED or FAILED answer as its callback would be applied.

    Returns the payment's status afterwards, or None when nothing was applied (another
    verdict, the payment is gone, or a callback holds its lock right now: the next run
    looks again). `actor` names who applied it in the audit trail.
    """
    event_type = {ProviderVerdict.SUCCEEDED: CallbackEventType.PAYMENT_SUCCEEDED,
                  ProviderVerdict.FAILED: CallbackEventType.PAYMENT_FAILED}.get(answer.verdict)
    if event_type is None or answer.amount is None or answer.currency is None:
        return None
    event = CallbackEvent(event_id=f"status-query:{query.provider_reference}",
                          type=event_type, payment_id=query.payment_id, amount=answer.amount,
                          currency=answer.currency, transaction_id=answer.transaction_id,
                          occurred_at=answer.paid_at)
    try:
        with payment_lock(res.redis, query.payment_id, ttl_seconds=LOCK_TTL_SECONDS,
                          blocking_timeout=LOCK_WAIT_SECONDS):
            with res.uow() as uow:
                settlement = settle_provider_report(uow.session, event,
                                                    provider=query.provider, actor=actor)
                status = uow.session.execute(
                    select(Payment.status).where(Payment.id == query.payment_id)
                ).scalar_one_or_none()
                if settlement.refund_id is not None:
                    uow.after_commit(_refund_sender(res, settlement.refund_id))
                uow.commit()
    except LockBusy:
        log.info("payment %s is being settled by someone else; the next run looks again",
                 query.payment_id)
        return None
    log.info("provider %s reports payment %s %s -> %s%s", query.provider, query.payment_id,
             answer.verdict.value, status,
             f" ({settlement.note})" if settlement.note else "")
    return status


_REFUND_EVENTS = {ProviderRefundStatus.SUCCEEDED: CallbackEventType.REFUND_SUCCEEDED,
                  ProviderRefundStatus.FAILED: CallbackEventType.REFUND_FAILED,
                  ProviderRefundStatus.ABNORMAL: CallbackEventType.REFUND_ABNORMAL}


def apply_refund_outcome(res: Resources, payment_id: int, refund_id: int, provider: str,
                         answer: ProviderRefund, *, amount: Decimal, currency: str) -> str:
    """A refund's outcome given in the provider's answer (Alipay's refunds are
    synchronous; any refund query's answer), applied as its refund callback would be: same
    lock, rules and audit. A callback for the same refund arriving as well is then a no-op.

    The amount applied is the provider's when its answer states one (so one that differs
    from ours, `amount`, is flagged for review rather than settled: §6), ours otherwise."""
    assert answer.outcome is not None
    event = CallbackEvent(event_id=f"refund-answer:{answer.reference}",
                          type=_REFUND_EVENTS[answer.outcome], payment_id=payment_id,
                          amount=amount if answer.amount is None else answer.amount,
                          currency=currency, transaction_id=answer.reference,
                          refund_id=refund_id)
    with payment_lock(res.redis, payment_id, ttl_seconds=LOCK_TTL_SECONDS,
                      blocking_timeout=LOCK_WAIT_SECONDS):
        with res.uow() as uow:
            settlement = settle_provider_report(uow.session, event, provider=provider,
                                                actor=f"provider:{provider}")
            uow.commit()
    log.info("refund %s at %s: %s -> %s%s", refund_id, provider, answer.outcome.value,
             settlement.status.value, f" ({settlement.note})" if settlement.note else "")
    return answer.outcome.value


def _refund_sender(res: Resources, refund_id: int) -> Callable[[], None]:
    """After commit: the late payment's automatic refund goes to refunds.execute, as one
    created by a callback does (a failed send is logged by the queue)."""
    def send() -> None:
        res.queue.send(EXECUTE_TASK, refund_id)
    return send
