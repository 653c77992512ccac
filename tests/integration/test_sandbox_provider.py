"""The sandbox provider over real HTTP, with a real worker delivering its callbacks.

Callbacks go to a recording receiver served by the test (test option callback_url),
so what the sandbox sends is observed as a merchant would see it; one test sends
to our own /callbacks/sandbox instead.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from sqlalchemy import select

from adapters.providers.sandbox.signature import (
    SIGNATURE_HEADER,
    parse_signature_header,
    verify_signature,
)
from domain.callback_events import parse_callback_body
from domain.models import ProviderCallback
from tests.support.processes import wait_until
from tests.support.recording_receiver import served_receiver

pytestmark = pytest.mark.slow
DELIVERY_WAIT = 30  # seconds; generous for a shared, busy machine


@pytest.fixture(scope="module")
def receiver():
    with served_receiver() as rec:
        yield rec


@pytest.fixture
def merchant(api, settings, celery_worker):
    """The merchant side of the sandbox's API (authenticated with the shared secret)."""
    return api.as_key(settings.sandbox_api_key)


def create(merchant, payment_id, amount="100.00", method="wechat", **test_options):
    response = merchant.post("/sandbox/api/payments", json={
        "merchant_payment_id": payment_id, "amount": amount, "currency": "CNY",
        "method": method, "test_options": test_options})
    assert response.status_code == 201, response.text  # a new merchant_payment_id
    return response.json()


def press(api, ticket, button):
    return api.post(f"/sandbox/pay/{ticket}/{button}", allow_redirects=False)


def deliveries(merchant, ticket):
    response = merchant.get(f"/sandbox/api/payments/{ticket}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_for_calls(receiver, token, count, what="callbacks"):
    return wait_until(lambda: len(receiver.calls(token)) >= count and receiver.calls(token),
                      timeout=DELIVERY_WAIT, message=f"{count} {what}")


def assert_authentic(call, secret, tolerance=5):
    """The signature verifies over the raw bytes received, at the time they arrived."""
    verify_signature(call.headers.get(SIGNATURE_HEADER), call.body, [secret],
                     now=call.received_at, tolerance_seconds=tolerance)


def test_merchant_api_needs_the_merchant_key(api, merchant):
    body = {"merchant_payment_id": 1, "amount": "1.00", "method": "wechat"}
    assert api.post("/sandbox/api/payments", json=body).status_code == 401
    wrong = api.as_key("not-the-secret").post("/sandbox/api/payments", json=body)
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_merchant_key"
    assert api.get("/sandbox/api/payments/tkt_x").status_code == 401
    assert api.post("/sandbox/api/refunds", json={}).status_code == 401
    assert merchant.get("/sandbox/api/payments/tkt_unknown").status_code == 404


def test_create_is_idempotent_on_the_merchant_payment_id(merchant, settings):
    first = merchant.post("/sandbox/api/payments", json={
        "merchant_payment_id": 7, "amount": "100.00", "currency": "CNY", "method": "wechat"})
    assert first.status_code == 201, first.text
    ticket = first.json()
    assert ticket["reference"].startswith("tkt_")
    assert ticket["pay_url"] == f"{settings.public_base_url}/sandbox/pay/{ticket['reference']}"
    assert ticket["qr_payload"] == ticket["pay_url"]  # wechat is a QR method
    again = merchant.post("/sandbox/api/payments", json={
        "merchant_payment_id": 7, "amount": "100.00", "currency": "CNY", "method": "wechat"})
    assert again.status_code == 200 and again.json()["reference"] == ticket["reference"]
    other_terms = merchant.post("/sandbox/api/payments", json={
        "merchant_payment_id": 7, "amount": "99.00", "currency": "CNY", "method": "wechat"})
    assert other_terms.status_code == 409
    assert other_terms.json()["code"] == "merchant_payment_id_reused"
    card = create(merchant, 8, method="bank_card")
    assert card["qr_payload"] is None and card["reference"] != ticket["reference"]


@pytest.mark.parametrize("body, code", [
    ({"amount": "1.00", "method": "wechat"}, "invalid_field"),
    ({"merchant_payment_id": 1, "amount": "1.005", "method": "wechat"}, "invalid_amount"),
    ({"merchant_payment_id": 1, "amount": 1.5, "method": "wechat"}, "invalid_amount"),
    ({"merchant_payment_id": 1, "amount": "1.00", "method": "cheque"}, "unsupported_method"),
    ({"merchant_payment_id": 1, "amount": "1.00", "method": "wechat",
      "test_options": {"fail_first": 99}}, "invalid_test_options"),
    ({"merchant_payment_id": 1, "amount": "1.00", "method": "wechat",
      "test_options": {"deliver_thrice": True}}, "invalid_test_options"),
])
def test_create_refuses_bad_input_and_stores_nothing(merchant, body, code):
    response = merchant.post("/sandbox/api/payments", json=body)
    assert response.status_code == 400 and response.json()["code"] == code, response.text
    good = create(merchant, 1, amount="1.00")  # the id is still free
    assert good["status"] == "pending"


def test_pay_page_then_approve_delivers_exactly_one_signed_payment_succeeded(
        api, merchant, receiver, settings):
    url, token = receiver.hook()
    ticket = create(merchant, 41, amount="123.45", callback_url=url)
    ref = ticket["reference"]
    page = api.get(f"/sandbox/pay/{ref}")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in ("123.45 CNY", "WeChat Pay", "pending", f'action="/sandbox/pay/{ref}/approve"',
                 f'action="/sandbox/pay/{ref}/decline"'):
        assert text in page.text
    # Self-contained: its one stylesheet is its own static file (no inline style: the CSP).
    assert not any(tag in page.text for tag in ("<script", "src=", "@import", "<style"))
    assert re.findall(r'<link[^>]*href="([^"]+)"', page.text) == ["/sandbox/static/sandbox.css"]
    assert api.get("/sandbox/static/sandbox.css").status_code == 200

    approved = press(api, ref, "approve")
    assert approved.status_code == 303
    assert approved.headers["Location"].endswith(f"/sandbox/pay/{ref}?result=approved")
    shown = api.get(approved.headers["Location"])
    assert "Payment approved." in shown.text and "succeeded" in shown.text
    assert "This payment has been paid" in shown.text and "is succeeded" not in shown.text

    [call] = wait_for_calls(receiver, token, 1)
    assert_authentic(call, settings.sandbox_webhook_secret)
    event = parse_callback_body(call.body)  # the §6 shape, as our endpoint reads it
    status = merchant.get(f"/sandbox/api/payments/{ref}").json()
    assert (event.type.value, event.payment_id, str(event.amount), event.currency) == (
        "payment.succeeded", 41, "123.45", "CNY")
    assert event.event_id.startswith("evt_") and event.occurred_at is not None
    assert event.transaction_id == status["transaction_id"]
    assert event.transaction_id.startswith("txn_")
    assert json.loads(call.body)["data"]["amount"] == "123.45"  # a string, never a float

    wait_until(lambda: deliveries(merchant, ref)[0]["status"] == "delivered",
               timeout=DELIVERY_WAIT, message="delivery marked delivered")
    [only] = deliveries(merchant, ref)
    assert only["attempts"] == 1 and only["last_status"] == 200
    # Pressing a button again changes nothing and sends nothing.
    again = press(api, ref, "approve")
    assert again.status_code == 409 and "already succeeded" in again.text
    assert again.headers["Content-Type"].startswith("text/html")
    as_json = api.post(f"/sandbox/pay/{ref}/decline", headers={"Accept": "application/json"})
    assert as_json.status_code == 409 and as_json.json()["code"] == "ticket_not_pending"
    assert len(deliveries(merchant, ref)) == 1 and len(receiver.calls(token)) == 1


def test_decline_delivers_payment_failed(api, merchant, receiver, settings):
    url, token = receiver.hook()
    ref = create(merchant, 42, callback_url=url)["reference"]
    declined = press(api, ref, "decline")
    assert declined.status_code == 303 and declined.headers["Location"].endswith(
        "?result=declined")
    [call] = wait_for_calls(receiver, token, 1)
    assert_authentic(call, settings.sandbox_webhook_secret)
    event = parse_callback_body(call.body)
    assert (event.type.value, event.payment_id, event.transaction_id) == (
        "payment.failed", 42, None)
    assert merchant.get(f"/sandbox/api/payments/{ref}").json()["status"] == "failed"
    assert press(api, ref, "approve").status_code == 409  # no out_of_order: final


def test_a_failing_receiver_gets_the_callback_later_with_a_fresh_signature(
        api, merchant, receiver, settings):
    url, token = receiver.hook(fail_first=3)
    ref = create(merchant, 43, callback_url=url)["reference"]
    press(api, ref, "approve")
    wait_until(lambda: any(c.answered == 200 for c in receiver.calls(token)),
               timeout=DELIVERY_WAIT, message="a delivery after three 500s")
    calls = receiver.calls(token)
    assert [c.answered for c in calls] == [500, 500, 500, 200]
    assert len({c.body for c in calls}) == 1  # the same event, byte for byte
    stamps = [parse_signature_header(c.headers[SIGNATURE_HEADER]).timestamp for c in calls]
    assert stamps == sorted(stamps) and stamps[-1] >= stamps[0] + 5  # backoff 1 + 2 + 4 s
    assert calls[-1].headers[SIGNATURE_HEADER] != calls[0].headers[SIGNATURE_HEADER]
    for call in calls:
        assert_authentic(call, settings.sandbox_webhook_secret)
    wait_until(lambda: deliveries(merchant, ref)[0]["status"] == "delivered",
               timeout=DELIVERY_WAIT, message="delivery marked delivered")
    assert deliveries(merchant, ref)[0]["attempts"] == 4


def test_fail_first_pretends_failed_attempts_without_sending(api, merchant, receiver):
    url, token = receiver.hook()
    ref = create(merchant, 44, callback_url=url, fail_first=2)["reference"]
    press(api, ref, "approve")
    wait_until(lambda: deliveries(merchant, ref)[0]["status"] == "delivered",
               timeout=DELIVERY_WAIT, message="delivered after two pretended failures")
    [row] = deliveries(merchant, ref)
    assert row["attempts"] == 3 and row["last_status"] == 200
    assert len(receiver.calls(token)) == 1  # the pretended failures sent nothing


def test_deliver_twice_sends_the_same_event_id_twice(api, merchant, receiver, settings):
    url, token = receiver.hook()
    ref = create(merchant, 45, callback_url=url, deliver_twice=True)["reference"]
    press(api, ref, "approve")
    first, second = wait_for_calls(receiver, token, 2)
    assert first.body == second.body
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]
    for call in (first, second):
        assert_authentic(call, settings.sandbox_webhook_secret)
    wait_until(lambda: all(d["status"] == "delivered" for d in deliveries(merchant, ref)),
               timeout=DELIVERY_WAIT, message="both copies delivered")
    assert len(deliveries(merchant, ref)) == 2 and len(receiver.calls(token)) == 2


def test_delay_seconds_holds_the_first_attempt_back(api, merchant, receiver):
    url, token = receiver.hook()
    ref = create(merchant, 46, callback_url=url, delay_seconds=2)["reference"]
    pressed_at = time.time()
    press(api, ref, "approve")
    [call] = wait_for_calls(receiver, token, 1)
    assert call.received_at - pressed_at >= 1.5


def test_out_of_order_delivers_a_later_success_before_the_earlier_decline(
        api, merchant, receiver):
    url, token = receiver.hook()
    ref = create(merchant, 47, callback_url=url, out_of_order=True)["reference"]
    assert press(api, ref, "decline").status_code == 303
    assert [d["status"] for d in deliveries(merchant, ref)] == ["held"]
    page = api.get(f"/sandbox/pay/{ref}").text
    assert "Approve" in page and "Decline</button>" not in page  # one more try, approve only
    assert press(api, ref, "approve").status_code == 303
    first, second = wait_for_calls(receiver, token, 2)
    assert [json.loads(c.body)["type"] for c in (first, second)] == [
        "payment.succeeded", "payment.failed"]
    assert merchant.get(f"/sandbox/api/payments/{ref}").json()["status"] == "succeeded"
    assert press(api, ref, "approve").status_code == 409


def test_switching_out_of_order_off_releases_a_held_callback(api, merchant, receiver):
    url, token = receiver.hook()
    ref = create(merchant, 48, callback_url=url, out_of_order=True)["reference"]
    press(api, ref, "approve")
    assert [d["status"] for d in deliveries(merchant, ref)] == ["held"]
    options = merchant.post(f"/sandbox/api/payments/{ref}/test-options",
                            json={"out_of_order": False})
    assert options.status_code == 200 and options.json()["out_of_order"] is False
    assert options.json()["callback_url"] == url  # the other knobs stay
    [call] = wait_for_calls(receiver, token, 1)
    assert json.loads(call.body)["type"] == "payment.succeeded"


def test_status_query_and_close(api, merchant):
    ref = create(merchant, 51)["reference"]
    status = merchant.get(f"/sandbox/api/payments/{ref}").json()
    assert {k: status[k] for k in ("status", "transaction_id", "amount", "currency")} == {
        "status": "pending", "transaction_id": None, "amount": "100.00", "currency": "CNY"}
    closed = merchant.post(f"/sandbox/api/payments/{ref}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert merchant.post(f"/sandbox/api/payments/{ref}/close").json()["status"] == "closed"
    assert press(api, ref, "approve").status_code == 409
    assert merchant.get(f"/sandbox/api/payments/{ref}").json()["status"] == "closed"

    paid = create(merchant, 52)["reference"]
    press(api, paid, "approve")
    refused = merchant.post(f"/sandbox/api/payments/{paid}/close")
    assert refused.status_code == 409 and refused.json()["code"] == "already_paid"
    status = merchant.get(f"/sandbox/api/payments/{paid}").json()
    assert status["status"] == "succeeded" and status["transaction_id"].startswith("txn_")


def test_refund_is_accepted_then_confirmed_by_refund_succeeded(
        api, merchant, receiver, settings):
    url, token = receiver.hook()
    ref = create(merchant, 61, callback_url=url)["reference"]
    unpaid = merchant.post("/sandbox/api/refunds",
                           json={"reference": ref, "refund_id": 1, "amount": "10.00"})
    assert unpaid.status_code == 409 and unpaid.json()["code"] == "not_paid"
    press(api, ref, "approve")
    wait_for_calls(receiver, token, 1, "payment callback")

    refund = {"reference": ref, "refund_id": 5, "amount": "30.00"}
    accepted = merchant.post("/sandbox/api/refunds", json=refund)
    assert accepted.status_code == 202 and accepted.json()["status"] == "accepted"
    repeated = merchant.post("/sandbox/api/refunds", json=refund)  # a redelivered request
    assert repeated.status_code == 200
    assert repeated.json()["reference"] == accepted.json()["reference"]
    too_much = merchant.post("/sandbox/api/refunds",
                             json={"reference": ref, "refund_id": 6, "amount": "70.01"})
    assert too_much.status_code == 400 and too_much.json()["remaining"] == "70.00"
    assert merchant.post("/sandbox/api/refunds", json={
        "reference": ref, "refund_id": 6, "amount": "70.00"}).status_code == 202

    calls = wait_for_calls(receiver, token, 3, "payment + two refund callbacks")
    refunds = [parse_callback_body(c.body) for c in calls[1:]]
    assert sorted((e.type.value, e.refund_id, str(e.amount)) for e in refunds) == [
        ("refund.succeeded", 5, "30.00"), ("refund.succeeded", 6, "70.00")]
    assert all(e.payment_id == 61 for e in refunds)
    for call in calls:
        assert_authentic(call, settings.sandbox_webhook_secret)
    status = merchant.get(f"/sandbox/api/payments/{ref}").json()
    assert status["refunded_amount"] == "100.00"
    assert len(deliveries(merchant, ref)) == 3  # the repeated request sent nothing


def test_fail_refunds_ends_a_refund_in_refund_failed(api, merchant, receiver):
    url, token = receiver.hook()
    ref = create(merchant, 62, callback_url=url, fail_refunds=True)["reference"]
    press(api, ref, "approve")
    assert merchant.post("/sandbox/api/refunds", json={
        "reference": ref, "refund_id": 9, "amount": "100.00"}).status_code == 202
    calls = wait_for_calls(receiver, token, 2)
    types = sorted(json.loads(c.body)["type"] for c in calls)
    assert types == ["payment.succeeded", "refund.failed"]
    assert merchant.get(f"/sandbox/api/payments/{ref}").json()["refunded_amount"] == "0.00"


def test_by_default_callbacks_reach_our_own_endpoint_and_verify(api, merchant, settings,
                                                                 clean_db):
    ref = create(merchant, 71)["reference"]
    press(api, ref, "approve")
    wait_until(lambda: deliveries(merchant, ref)[0]["status"] == "delivered",
               timeout=DELIVERY_WAIT, message="delivered to /callbacks/sandbox")
    [row] = deliveries(merchant, ref)
    assert row["url"] == settings.public_base_url + "/callbacks/sandbox"
    assert row["last_status"] == 200  # our endpoint verified the signature and stored it
    with clean_db.uow() as uow:
        stored = uow.session.scalars(select(ProviderCallback.event_id).where(
            ProviderCallback.provider == "sandbox")).all()
    assert stored == [row["event_id"]]
