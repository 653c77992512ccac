"""SSRF (DESIGN.md §9): with APP_ENV=production, loopback, private, link-local and
metadata targets are refused at registration AND at delivery, where the address the
name resolves to then is checked (so a name that turns private later, DNS rebinding,
is caught). The suite runs with APP_ENV=test, so these settings are built here.

No request ever goes to a private address: a refused target is refused before any
connection is made (the receiver, on loopback, counts what arrives).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from adapters.resources import Resources
from config import Settings
from domain.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from services.expiry import expire_due_payments
from services.transitions import utc_now
from services.webhooks.delivery import attempt_delivery
from tests.support.factories import make_order, make_payment
from tests.support.live_server import Api, serve
from tests.support.webhooks import receiver  # noqa: F401
from web.app import create_app

REFUSED_TARGETS = ["http://127.0.0.1:8080/hook", "http://10.0.0.1/hook",
                   "http://169.254.169.254/latest/meta-data/", "http://localhost:9/hook",
                   "http://[::1]/hook", "https://100.100.100.200/"]


def _production(stack_env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**stack_env, "APP_ENV": "production",
                              "SANDBOX_WEBHOOK_SECRET": "s" * 32,
                              "CHECKOUT_TOKEN_SECRET": "c" * 32,
                              "FLOWER_BASIC_AUTH": "ops:" + "p" * 32, **extra})


@pytest.fixture
def production(stack_env, clean_db):
    res = Resources(_production(stack_env))
    yield res
    res.close()


def _count(res: Resources, model) -> int:
    with res.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)))


@pytest.mark.parametrize("url", REFUSED_TARGETS)
def test_registering_a_private_target_in_production_is_refused(production, admin_key, url):
    with serve(create_app(production.settings, production)) as base:
        response = Api(base, admin_key).post("/api/v1/webhook-endpoints",
                                             json={"url": url, "events": ["*"]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "forbidden_url" and body["field"] == "url"
    assert "not allowed" in body["detail"]
    assert _count(production, WebhookEndpoint) == 0


def test_a_target_that_resolves_to_loopback_at_delivery_is_refused(
        production, clean_db, stack_env, receiver):  # noqa: F811
    # Registered while its name pointed elsewhere (rows written as registration would),
    # these now resolve to (or are) loopback, private or metadata addresses.
    url, token = receiver.hook()
    local_name = url.replace("127.0.0.1", "localhost")
    targets = [local_name, url, "http://10.0.0.1/hook", "http://169.254.169.254/"]
    with clean_db.uow() as uow:
        uow.session.add_all([WebhookEndpoint(url=t, events=["*"], secret="whsec_test")
                             for t in targets])
        uow.commit()
    make_payment(clean_db, make_order(clean_db), expires_at=_an_hour_ago(clean_db))
    assert expire_due_payments(clean_db).changed == 1
    with clean_db.uow() as uow:
        delivery_ids = list(uow.session.scalars(select(WebhookDelivery.id)))
    assert len(delivery_ids) == len(targets)

    outcomes = [attempt_delivery(production, d) for d in delivery_ids]
    assert [o.state for o in outcomes] == ["pending"] * len(targets)  # retried later
    with clean_db.uow() as uow:
        errors = list(uow.session.scalars(select(WebhookAttempt.error)))
    assert len(errors) == len(targets)
    assert all(e.startswith("refused: ") for e in errors), errors
    assert any("localhost resolves to 127.0.0.1 is a loopback address" in e for e in errors)
    assert any("169.254.169.254 is a cloud metadata address" in e for e in errors)
    assert any("10.0.0.1 is a private address" in e for e in errors)
    assert receiver.started(token) == 0  # nothing was sent

    # WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 lets a deployment reach its own network on purpose.
    allowed = Resources(_production(stack_env, WEBHOOK_ALLOW_PRIVATE_NETWORKS="1"))
    try:
        with clean_db.uow() as uow:
            uow.session.execute(WebhookDelivery.__table__.update().values(
                next_attempt_at=func.now()))
            uow.commit()
        with clean_db.uow() as uow:
            local = uow.session.scalar(
                select(WebhookDelivery.id).join(WebhookEndpoint)
                .where(WebhookEndpoint.url == local_name))
        assert attempt_delivery(allowed, local).state == "delivered"
    finally:
        allowed.close()
    assert receiver.started(token) == 1


def _an_hour_ago(res: Resources) -> datetime:
    with res.uow() as uow:
        return utc_now(uow.session) - timedelta(hours=1)
