"""The life of a delivery without a worker in the way (DESIGN.md §9): each attempt run
here by hand, against a real receiver, on a broker of this test's own so the task
messages can be read: after commit, the retry schedule then `failed`, an endpoint that
fails everything for 3 days disabled, manual redelivery, the sweep for lost messages."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from adapters.resources import Resources
from config import WebhookSettings
from domain.models import PaymentEvent
from domain.statuses import PaymentStatus
from domain.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from services.transitions import transition_payment, utc_now
from services.webhooks.delivery import attempt_delivery, redeliver_lost
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with
from tests.support.webhooks import receiver, register  # noqa: F401


@pytest.fixture
def res(settings, clean_db, private_redis):
    fast = dataclasses.replace(
        settings_with(settings, redis_url=private_redis.url),
        webhooks=WebhookSettings(retry_schedule_seconds=(1, 1)))
    resources = Resources(fast)
    yield resources
    resources.close()


def _cancel_a_payment(res: Resources) -> int:
    payment_id = make_payment(res, make_order(res))
    with res.uow() as uow:
        transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED, actor="test",
                           event="payment_cancelled")
        uow.commit()
    return payment_id


def _delivery(res: Resources) -> WebhookDelivery:
    with res.uow() as uow:
        row = uow.session.scalars(select(WebhookDelivery)).one()
        uow.session.expunge(row)
        return row


def _due_now(res: Resources) -> None:
    """Pretend the retry's wait has passed."""
    with res.uow() as uow:
        uow.session.execute(update(WebhookDelivery).values(
            next_attempt_at=utc_now(uow.session) - timedelta(seconds=1)))
        uow.commit()


def test_retries_follow_the_schedule_then_the_delivery_is_failed(
        api, admin_key, res, private_redis, receiver):  # noqa: F811
    url, token = receiver.hook(refuse_first=99)
    register(api.as_key(admin_key), url)
    _cancel_a_payment(res)
    delivery = _delivery(res)
    # Sent once its transaction committed, to the webhooks queue.
    assert private_redis.queued("webhooks") == [
        {"task": "webhooks.deliver", "args": [delivery.id]}]

    first = attempt_delivery(res, delivery.id)
    assert first.state == "pending" and first.retry_in == 1
    assert attempt_delivery(res, delivery.id).state == "pending"  # not due: nothing sent
    assert len(receiver.calls(token)) == 1
    _due_now(res)
    assert attempt_delivery(res, delivery.id).retry_in == 1
    _due_now(res)
    assert attempt_delivery(res, delivery.id).state == "failed"  # 1 + 2 retries, then no more
    assert attempt_delivery(res, delivery.id).state == "failed"
    assert len(receiver.calls(token)) == 3
    assert _delivery(res).attempts == 3 and _delivery(res).last_status_code == 503


def test_an_endpoint_failing_everything_for_three_days_is_disabled(
        api, admin_key, res, receiver):  # noqa: F811
    url, _ = receiver.hook(refuse_first=99)
    endpoint = register(api.as_key(admin_key), url)
    _cancel_a_payment(res)
    delivery = _delivery(res)
    attempt_delivery(res, delivery.id)
    with res.uow() as uow:
        since = uow.session.scalar(select(WebhookEndpoint.failing_since))
        assert since is not None
        uow.session.execute(update(WebhookEndpoint).values(
            failing_since=since - timedelta(days=3)))
        uow.commit()
    _due_now(res)
    attempt_delivery(res, delivery.id)
    shown = api.as_key(admin_key).get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("every delivery failed since")
    with res.uow() as uow:
        audit = uow.session.scalars(select(PaymentEvent.event)
                                    .where(PaymentEvent.payment_id.is_(None))).all()
    assert audit == ["webhook_endpoint_disabled"]
    _due_now(res)
    assert attempt_delivery(res, delivery.id).state == "failed"  # disabled: not sent again


def test_a_success_ends_the_failing_streak_and_manual_redelivery_sends_it_again(
        api, admin_key, res, private_redis, receiver):  # noqa: F811
    admin = api.as_key(admin_key)
    url, token = receiver.hook(refuse_first=1)
    endpoint = register(admin, url)
    _cancel_a_payment(res)
    delivery = _delivery(res)
    attempt_delivery(res, delivery.id)
    _due_now(res)
    assert attempt_delivery(res, delivery.id).state == "delivered"
    assert admin.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()[
        "failing_since"] is None

    event_id = receiver.calls(token)[0].event_id
    private_redis.client().delete("webhooks")
    answer = admin.post(f"/api/v1/events/{event_id}/redeliver")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"event_id": event_id, "deliveries": 1}
    # The live server sends on the session's broker; what matters here is the row.
    assert _delivery(res).status == "pending"
    assert attempt_delivery(res, delivery.id).state == "delivered"
    calls = receiver.calls(token)
    assert [c.event_id for c in calls] == [event_id] * 3
    assert [c.answered for c in calls] == [503, 200, 200]
    with res.uow() as uow:
        numbers = uow.session.scalars(select(WebhookAttempt.number)
                                      .order_by(WebhookAttempt.id)).all()
    assert numbers == [1, 2, 3]

    # No enabled endpoint wants it any more: a clear 409, nothing queued.
    admin.request("PATCH", f"/api/v1/webhook-endpoints/{endpoint['id']}",
                  json={"enabled": False})
    refused = admin.post(f"/api/v1/events/{event_id}/redeliver")
    assert refused.status_code == 409 and refused.json()["code"] == "no_subscribed_endpoint"


def test_the_sweep_sends_again_a_delivery_whose_message_was_lost(
        api, admin_key, res, private_redis, receiver):  # noqa: F811
    url, _ = receiver.hook()
    register(api.as_key(admin_key), url)
    _cancel_a_payment(res)
    delivery = _delivery(res)
    private_redis.client().delete("webhooks")  # the message is lost
    assert redeliver_lost(res) == 0  # not overdue by a minute yet
    with res.uow() as uow:
        uow.session.execute(update(WebhookDelivery).values(
            next_attempt_at=func.now() - timedelta(minutes=2)))
        uow.commit()
    assert redeliver_lost(res) == 1
    assert private_redis.queued("webhooks") == [
        {"task": "webhooks.deliver", "args": [delivery.id]}]
    assert redeliver_lost(res) == 0  # marked due now: not sent again at once
    assert attempt_delivery(res, delivery.id).state == "delivered"
