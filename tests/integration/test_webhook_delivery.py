"""Merchant webhooks delivered by a real webhooks-queue worker to a real HTTP receiver
(DESIGN.md §9): retries with the same event id, valid signatures, the attempts listed,
a rotated secret signing beside the new one, and no secret in any listing or log line."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from domain.webhook_models import WebhookEndpoint
from domain.webhook_signature import EVENT_TYPE_HEADER, SIGNATURE_HEADER, verify
from services.transitions import utc_now
from tests.support.callbacks import event_body, post_callback
from tests.support.processes import wait_until
from tests.support.webhooks import receiver, register, webhooks_worker  # noqa: F401

pytestmark = pytest.mark.slow
WAIT = 60


def _paid_payment(admin, live_url: str) -> dict:
    order = admin.post("/api/v1/orders", json={"total_amount": "100.00", "user_id": 7}).json()
    payment = admin.post("/api/v1/payments", json={"order_id": order["id"]}).json()
    response = post_callback(live_url, event_body(payment["id"]))
    assert response.status_code == 200, response.text
    return payment


def test_a_paid_payment_reaches_a_receiver_that_refuses_twice_with_the_same_signed_event(
        api, admin_key, live_url, celery_worker, webhooks_worker, receiver):  # noqa: F811
    admin = api.as_key(admin_key)
    url, token = receiver.hook(refuse_first=2)
    endpoint = register(admin, url)
    secret = endpoint["secret"]
    payment = _paid_payment(admin, live_url)

    calls = wait_until(lambda: (c := receiver.calls(token)) and
                       sum(x.answered == 200 for x in c) >= 2 and c,
                       timeout=WAIT, message="both events delivered")
    by_type: dict[str, list] = {}
    for call in calls:
        by_type.setdefault(call.headers[EVENT_TYPE_HEADER], []).append(call)
    assert set(by_type) == {"payment.succeeded", "order.paid"}
    for event_type, attempts in by_type.items():
        # refused, refused, accepted: three attempts of one event, the same id every time
        assert [a.answered for a in attempts] == [503, 503, 200], event_type
        assert len({a.event_id for a in attempts}) == 1
        assert len({a.body for a in attempts}) == 1  # the same bytes, signed afresh
        for attempt in attempts:
            assert verify(attempt.headers[SIGNATURE_HEADER], attempt.body, secret,
                          now=int(time.time()))
            assert not verify(attempt.headers[SIGNATURE_HEADER], attempt.body + b" ", secret,
                              now=int(time.time()))
        body = json.loads(attempts[0].body)
        assert body["id"] == attempts[0].event_id and body["type"] == event_type
    succeeded = json.loads(by_type["payment.succeeded"][0].body)["data"]["object"]
    assert succeeded["id"] == payment["id"] and succeeded["status"] == "succeeded"
    assert succeeded["amount"] == "100.00"
    paid = json.loads(by_type["order.paid"][0].body)["data"]["object"]
    assert paid["id"] == payment["order_id"] and paid["status"] == "paid"
    assert paid["amount_paid"] == "100.00" and paid["history"][-1]["to"] == "paid"

    listing = wait_until(lambda: (r := admin.get(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries").json())["items"] and all(
        d["status"] == "delivered" for d in r["items"]) and r, timeout=WAIT,
        message="deliveries listed as delivered")
    assert len(listing["items"]) == 2
    for item in listing["items"]:
        assert item["attempts"] == 3 and item["last_status_code"] == 200
        assert [a["status_code"] for a in item["attempt_log"]] == [503, 503, 200]
        assert [a["number"] for a in item["attempt_log"]] == [1, 2, 3]
        assert item["attempt_log"][0]["error"] == "HTTP 503"
        assert "pretending to be down" in item["attempt_log"][0]["response_body"]
        assert item["next_attempt_at"] is None
        assert item["event_id"] in {c.event_id for c in calls}


def test_a_rotated_secret_signs_with_both_for_24_hours_then_only_the_new_one(
        api, admin_key, live_url, clean_db, celery_worker, webhooks_worker,  # noqa: F811
        receiver):  # noqa: F811
    admin = api.as_key(admin_key)
    url, token = receiver.hook()
    endpoint = register(admin, url, ["payment.succeeded"])
    old_secret = endpoint["secret"]
    rotated = admin.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    ends = rotated.json()["secret_rotation_ends_at"]
    assert ends is not None

    _paid_payment(admin, live_url)
    first = wait_until(lambda: receiver.calls(token), timeout=WAIT, message="a delivery")[0]
    header = first.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    now = int(time.time())
    assert verify(header, first.body, old_secret, now=now)
    assert verify(header, first.body, new_secret, now=now)

    # 24 h later (the overlap's end moved to the past): the old secret signs no more.
    with clean_db.uow() as uow:
        uow.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint["id"])
                            .values(previous_secret_expires_at=utc_now(uow.session)
                                    - timedelta(seconds=1)))
        uow.commit()
    _paid_payment(admin, live_url)
    second = wait_until(lambda: (c := receiver.calls(token)) and len(c) >= 2 and c[1],
                        timeout=WAIT, message="a second delivery")
    header = second.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 1
    assert verify(header, second.body, new_secret, now=int(time.time()))
    assert not verify(header, second.body, old_secret, now=int(time.time()))


def test_the_secret_never_appears_in_a_listing_or_a_log_line(
        api, admin_key, live_url, celery_worker, webhooks_worker, receiver,  # noqa: F811
        tmp_run_dir: Path, caplog):
    caplog.set_level("DEBUG")
    admin = api.as_key(admin_key)
    url, token = receiver.hook(refuse_first=1)
    endpoint = register(admin, url)
    secrets = [endpoint["secret"]]
    secrets.append(admin.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").json()["secret"])
    _paid_payment(admin, live_url)
    wait_until(lambda: len(receiver.event_ids(token)) >= 2, timeout=WAIT,
               message="events delivered")
    pages = [admin.get("/api/v1/webhook-endpoints"),
             admin.get(f"/api/v1/webhook-endpoints/{endpoint['id']}"),
             admin.request("PATCH", f"/api/v1/webhook-endpoints/{endpoint['id']}",
                           json={"description": "fulfilment"}),
             admin.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries"),
             admin.get("/api/v1/events")]
    logs = [caplog.text, (tmp_run_dir / "webhooks-worker.log").read_text(),
            (tmp_run_dir / "worker.log").read_text()]
    for secret in secrets:
        for page in pages:
            assert page.status_code == 200, page.text
            assert secret not in page.text
        for text in logs:
            assert secret not in text
    assert "secret" not in pages[0].json()["items"][0]
