"""Which rows the start sweeps send again (services/resend.py), counted on a broker of the
test's own that no worker drains. tests/faults/test_lost_messages.py runs them end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from adapters.resources import Resources
from adapters.run_once import lock_key
from domain.models import Payment, Refund
from services.maintenance import (
    check_processing_refunds,
    resend_lost_payment_starts,
    resend_lost_refunds,
)
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with

QUIET = timedelta(minutes=11)  # longer than either sweep's quiet period


@pytest.fixture
def res(clean_db, settings, private_redis):
    private = Resources(settings_with(settings, redis_url=private_redis.url))
    yield private
    private.close()


def _payment(res, status: str, *, reference: str | None, quiet: bool = True,
             expires_in: timedelta = timedelta(minutes=20)) -> int:
    then = datetime.now(UTC) - (QUIET if quiet else timedelta(0))
    payment_id = make_payment(res, make_order(res), status=status, created_at=then,
                              expires_at=datetime.now(UTC) + expires_in)
    with res.uow() as uow:
        uow.session.execute(update(Payment).where(Payment.id == payment_id)
                            .values(provider_reference=reference))
        uow.commit()
    return payment_id


def _refund(res, payment_id: int, status: str, *, quiet: bool = True,
            provider_refund_id: str | None = None) -> int:
    then = datetime.now(UTC) - (QUIET if quiet else timedelta(0))
    with res.uow() as uow:
        refund_id = uow.session.execute(insert(Refund).values(
            payment_id=payment_id, amount=10, currency="CNY", status=status,
            provider_refund_id=provider_refund_id, created_at=then, updated_at=then)
            .returning(Refund.id)).scalar_one()
        uow.commit()
    return int(refund_id)


def _sent(private_redis, task: str) -> list[int]:
    return [m["args"][0] for m in private_redis.queued("payments") if m["task"] == task]


def test_only_pending_quiet_refunds_with_a_provider_payment_are_sent_again(res, private_redis):
    paid = _payment(res, "succeeded", reference="tkt_1")
    lost = _refund(res, paid, "pending")
    _refund(res, paid, "pending", quiet=False)  # its task may still be running
    _refund(res, paid, "processing", provider_refund_id="rfd_1")  # the provider has it
    _refund(res, paid, "succeeded", provider_refund_id="rfd_2")
    _refund(res, _payment(res, "succeeded", reference=None), "pending")  # nothing to ask

    assert resend_lost_refunds(res)["changed"] == 1
    assert _sent(private_redis, "refunds.execute") == [lost]
    # Stamped when sent: the next run leaves it alone for another quiet period.
    assert resend_lost_refunds(res)["changed"] == 0
    with res.uow() as uow:
        stamped = uow.session.execute(select(Refund.updated_at).where(Refund.id == lost)
                                      ).scalar_one()
    assert datetime.now(UTC) - stamped < timedelta(minutes=1)


def test_only_processing_quiet_unstarted_payments_are_started_again(res, private_redis):
    lost = _payment(res, "processing", reference=None)
    _payment(res, "processing", reference=None, quiet=False)  # pay was just accepted
    _payment(res, "processing", reference="tkt_2")  # started at the provider
    _payment(res, "init", reference=None)  # nobody pressed pay
    _payment(res, "processing", reference=None, expires_in=timedelta(seconds=-1))  # expiry's

    assert resend_lost_payment_starts(res)["changed"] == 1
    assert _sent(private_redis, "payments.initiate") == [lost]
    assert resend_lost_payment_starts(res)["changed"] == 0


def test_a_run_while_another_holds_the_lock_is_skipped(res, private_redis):
    _payment(res, "processing", reference=None)
    client = private_redis.client()
    try:
        for job, run in (("resend_refunds", resend_lost_refunds),
                         ("resend_payment_starts", resend_lost_payment_starts)):
            client.set(lock_key(job), "someone else", ex=60)
            assert run(res) == {"skipped": "already running"}
    finally:
        client.close()
    assert private_redis.queued("payments") == []


def test_only_processing_refunds_quiet_for_half_an_hour_are_asked_of_the_provider(
        res, private_redis):
    """maintenance.check_refunds: accepted by the provider (processing, with its refund id),
    quiet for REFUND_CHECK_QUIET_SECONDS and not flagged for review -> refunds.check; every
    other refund is left (a flagged one waits for a person, not for the provider)."""
    paid = _payment(res, "succeeded", reference="tkt_2")
    half_hour_ago = datetime.now(UTC) - timedelta(minutes=31)
    stale = _refund(res, paid, "processing", provider_refund_id="rfd_2")
    recent = _refund(res, paid, "processing", provider_refund_id="rfd_3")  # 11 min: too soon
    _refund(res, paid, "pending")  # resend_refunds' business, not this sweep's
    done = _refund(res, paid, "succeeded", provider_refund_id="rfd_4")
    flagged = _refund(res, paid, "processing", provider_refund_id="rfd_5")  # a person's now
    with res.uow() as uow:
        uow.session.execute(update(Refund).where(Refund.id.in_([stale, done, flagged]))
                            .values(updated_at=half_hour_ago))
        uow.session.execute(update(Refund).where(Refund.id == flagged)
                            .values(needs_review=True))
        uow.commit()

    assert check_processing_refunds(res)["changed"] == 1
    assert _sent(private_redis, "refunds.check") == [stale]
    assert check_processing_refunds(res)["changed"] == 0  # stamped: quiet again
    assert check_processing_refunds(res, older_than_seconds=0)["changed"] == 2
    assert sorted(_sent(private_redis, "refunds.check")) == sorted([stale, stale, recent])
