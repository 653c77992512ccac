"""Payments over real HTTP and PostgreSQL (DESIGN.md §5, seeds 000 / 001 / 004).

Time is controlled by creating rows in the past (factories' created_at), never by
sleeping: the 30 s retry gap, the 24 h order TTL and the 30 min payment TTL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from tests.support.factories import make_order, make_payment
from tests.support.live_server import Api
from tests.support.processes import wait_until

PAYMENT_FIELDS = {"id", "order_id", "amount", "currency", "method", "status", "provider",
                  "transaction_id", "out_trade_no", "pay_url", "attempt", "fee", "refunded_amount",
                  "created_at", "updated_at", "expires_at", "paid_at", "needs_review",
                  "checkout_url"}


def ago(**kwargs) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def row_counts(res) -> tuple[int, ...]:
    with res.uow() as uow:
        return tuple(uow.session.execute(select(func.count()).select_from(m)).scalar_one()
                     for m in (Order, OrderStatusHistory, Payment, PaymentEvent))


def events(res, payment_id: int) -> list[str]:
    with res.uow() as uow:
        return list(uow.session.execute(
            select(PaymentEvent.event).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id)).scalars())


def status_of(res, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()


@pytest.fixture
def user(api, make_user_key):
    return api.as_key(make_user_key(1))


# --- creation: seed 000's success and failure table ------------------------------------

def test_create_payment_201_with_every_field(user, clean_db, settings):
    order_id = make_order(clean_db, total="100.00")
    response = user.post("/api/v1/payments", json={"order_id": order_id, "method": "wechat",
                                                   "amount": "100.00"})
    assert response.status_code == 201
    payment = response.json()
    assert set(payment) == PAYMENT_FIELDS | {"logs"}
    assert payment["order_id"] == order_id
    assert (payment["amount"], payment["currency"], payment["method"]) == ("100.00", "CNY",
                                                                           "wechat")
    assert (payment["status"], payment["provider"], payment["attempt"]) == ("init", "sandbox", 1)
    assert payment["fee"] == "0.60"
    assert payment["refunded_amount"] == "0.00"
    assert payment["transaction_id"] is None and payment["paid_at"] is None
    created = datetime.fromisoformat(payment["created_at"])
    expires = datetime.fromisoformat(payment["expires_at"])
    assert expires - created == timedelta(seconds=settings.payment_ttl_seconds)
    assert [log["event"] for log in payment["logs"]] == ["payment_created"]
    assert payment["logs"][0]["actor"] == "user:1"
    assert payment["logs"][0]["detail"]["amount"] == "100.00"


@pytest.mark.parametrize(("body", "method", "fee"), [
    ({}, "wechat", "1.20"),                        # method defaults to wechat, amount to total
    ({"method": "alipay", "amount": 200}, "alipay", "1.20"),   # JSON number, no float
    ({"method": "bank", "amount": "200"}, "bank_card", "1.60"),  # alias, same to the cent
])
def test_method_and_amount_defaults_and_forms(user, clean_db, body, method, fee):
    order_id = make_order(clean_db, total="200.00")
    response = user.post("/api/v1/payments", json={"order_id": order_id, **body})
    assert response.status_code == 201
    assert (response.json()["method"], response.json()["fee"]) == (method, fee)
    assert response.json()["amount"] == "200.00"


def test_failure_order_not_found_404(user, clean_db):
    response = user.post("/api/v1/payments", json={"order_id": 424242})
    assert response.status_code == 404
    assert response.json()["code"] == "order_not_found"


def test_failure_another_users_order_is_404(user, clean_db):
    order_id = make_order(clean_db, user_id=2)
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert response.status_code == 404
    assert response.json()["code"] == "order_not_found"
    assert row_counts(clean_db)[2:] == (0, 0)


@pytest.mark.parametrize("method", ["invalid_method", "paypal", "crypto"])
def test_failure_unsupported_method_400(user, clean_db, method):
    order_id = make_order(clean_db)
    response = user.post("/api/v1/payments", json={"order_id": order_id, "method": method})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unsupported_method"
    assert body["supported_methods"] == ["alipay", "balance", "bank_card", "wechat"]
    assert row_counts(clean_db)[2:] == (0, 0)


@pytest.mark.parametrize(("order_total", "sent"), [("99.99", "100.00"), ("100.00", "99.99"),
                                                    ("100.00", "100.01")])
def test_failure_amount_mismatch_400_to_the_cent(user, clean_db, order_total, sent):
    order_id = make_order(clean_db, total=order_total)
    response = user.post("/api/v1/payments", json={"order_id": order_id, "amount": sent})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "amount_mismatch"
    assert (body["order_amount"], body["payment_amount"]) == (order_total, sent)
    assert body["detail"]
    assert row_counts(clean_db)[2:] == (0, 0)


@pytest.mark.parametrize("status", ["paid", "shipped", "cancelled", "expired", "refunded"])
def test_failure_order_not_payable_409(user, clean_db, status):
    order_id = make_order(clean_db, status=status)
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_payable"
    assert response.json()["order_status"] == status
    assert row_counts(clean_db)[2:] == (0, 0)


def test_failure_order_expired_409(user, clean_db, settings):
    order_id = make_order(clean_db, created_at=ago(seconds=settings.order_ttl_seconds + 5))
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert response.status_code == 409
    assert response.json()["code"] == "order_expired"
    assert row_counts(clean_db)[2:] == (0, 0)


def test_order_just_inside_its_ttl_is_payable(user, clean_db, settings):
    order_id = make_order(clean_db, created_at=ago(seconds=settings.order_ttl_seconds - 60))
    assert user.post("/api/v1/payments", json={"order_id": order_id}).status_code == 201


def test_existing_active_payment_is_returned_with_200(user, clean_db):
    order_id = make_order(clean_db)
    first = user.post("/api/v1/payments", json={"order_id": order_id})
    again = user.post("/api/v1/payments", json={"order_id": order_id, "method": "alipay"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["method"] == "wechat"
    assert row_counts(clean_db)[2:] == (1, 1)


def test_processing_payment_is_also_the_active_one(user, clean_db):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status="processing")
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert (response.status_code, response.json()["id"]) == (200, payment_id)


def test_active_but_past_due_payment_is_expired_then_replaced(user, clean_db):
    order_id = make_order(clean_db)
    stale = make_payment(clean_db, order_id, created_at=ago(minutes=40),
                         expires_at=ago(minutes=10))
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert response.status_code == 201
    assert response.json()["id"] != stale
    assert response.json()["attempt"] == 2
    assert status_of(clean_db, stale) == "expired"
    assert events(clean_db, stale) == ["payment_expired"]


def test_new_attempt_after_a_failed_one_is_numbered(user, clean_db):
    order_id = make_order(clean_db)
    make_payment(clean_db, order_id, status="failed")
    response = user.post("/api/v1/payments", json={"order_id": order_id})
    assert (response.status_code, response.json()["attempt"]) == (201, 2)


BAD_PAYMENT_BODIES = [
    ("[{}]", "malformed_json"),
    ('"order_id"', "malformed_json"),
    ("42", "malformed_json"),
    ('{"order_id": ', "malformed_json"),
    ('{"order_id": ORDER, "amount": NaN}', "malformed_json"),
    ('{"order_id": ORDER, "amount": -Infinity}', "malformed_json"),
    ("{}", "invalid_field"),
    ('{"order_id": "ORDER"}', "invalid_field"),
    ('{"order_id": ORDER.5}', "invalid_field"),
    ('{"order_id": true}', "invalid_field"),
    ('{"order_id": [ORDER]}', "invalid_field"),
    ('{"order_id": -1}', "invalid_field"),
    ('{"order_id": 0}', "invalid_field"),
    ('{"order_id": 1e3}', "invalid_field"),
    ('{"order_id": 123456789012345678901234567890}', "invalid_field"),
    ('{"order_id": ORDER, "method": 7}', "unsupported_method"),
    ('{"order_id": ORDER, "method": "' + "w" * 300 + '"}', "unsupported_method"),
    ('{"order_id": ORDER, "amount": "100.001"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": 100.001}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": 0}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "0.00"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "-100.00"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": -100}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "NaN"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "Infinity"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": 1e400}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "1e400"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "99999999999999999999.00"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "one hundred"}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": ""}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": true}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": {"value": "100.00"}}', "invalid_amount"),
    ('{"order_id": ORDER, "amount": "' + "1" * 100 + '"}', "invalid_amount"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_PAYMENT_BODIES)
def test_bad_payment_input_is_400_and_leaves_no_row(user, clean_db, raw, code):
    order_id = make_order(clean_db, total="100.00")
    before = row_counts(clean_db)
    response = user.post("/api/v1/payments", data=raw.replace("ORDER", str(order_id)),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert row_counts(clean_db) == before


# --- reading: detail, status, list -----------------------------------------------------

def test_detail_has_the_design_fields_and_logs_oldest_first(user, clean_db):
    order_id = make_order(clean_db)
    payment_id = user.post("/api/v1/payments", json={"order_id": order_id}).json()["id"]
    user.post(f"/api/v1/payments/{payment_id}/cancel", json={"reason": "changed my mind"})
    response = user.get(f"/api/v1/payments/{payment_id}")
    assert response.status_code == 200
    payment = response.json()
    assert set(payment) == PAYMENT_FIELDS | {"logs"}
    assert payment["status"] == "cancelled"
    assert [log["event"] for log in payment["logs"]] == ["payment_created", "payment_cancelled"]
    assert set(payment["logs"][0]) == {"event", "detail", "actor", "at"}
    assert payment["logs"][1]["detail"]["reason"] == "changed my mind"
    assert payment["logs"][1]["detail"]["from_status"] == "init"


def test_status_endpoint(user, clean_db):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status="failed")
    response = user.get(f"/api/v1/payments/{payment_id}/status")
    assert response.status_code == 200
    assert set(response.json()) == {"id", "status", "updated_at"}
    assert (response.json()["id"], response.json()["status"]) == (payment_id, "failed")


def test_missing_payment_is_404(user):
    for path in ("/api/v1/payments/999999", "/api/v1/payments/999999/status",
                 "/api/v1/payments/99999999999999999999999"):
        response = user.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "payment_not_found", path


@pytest.fixture
def listing(clean_db):
    """Payments of users 1 and 2 at known times, methods and statuses."""
    ids = {}
    for n, (user_id, status, method, minutes) in enumerate([
        (1, "failed", "wechat", 300), (1, "succeeded", "alipay", 200),
        (1, "init", "wechat", 100), (2, "init", "bank_card", 50),
    ]):
        order_id = make_order(clean_db, user_id=user_id)
        ids[n] = make_payment(clean_db, order_id, user_id=user_id, status=status,
                              method=method, created_at=ago(minutes=minutes))
    return ids


def test_list_for_admin_newest_first_with_filters(api, admin_key, listing):
    admin = api.as_key(admin_key)
    everything = admin.get("/api/v1/payments").json()
    assert (everything["page"], everything["page_size"], everything["total"]) == (1, 20, 4)
    assert [p["id"] for p in everything["items"]] == [listing[3], listing[2], listing[1],
                                                      listing[0]]
    assert set(everything["items"][0]) == PAYMENT_FIELDS

    def ids(**params):
        return [p["id"] for p in admin.get("/api/v1/payments", params=params).json()["items"]]

    assert ids(user_id=2) == [listing[3]]
    assert ids(status="init") == [listing[3], listing[2]]
    assert ids(method="alipay") == [listing[1]]
    assert ids(method="bank") == [listing[3]]
    order_id = admin.get(f"/api/v1/payments/{listing[1]}").json()["order_id"]
    assert ids(order_id=order_id) == [listing[1]]
    assert ids(created_from=ago(minutes=250).isoformat()) == [listing[3], listing[2],
                                                               listing[1]]
    assert ids(created_to=ago(minutes=150).isoformat()) == [listing[1], listing[0]]
    assert ids(created_from=ago(minutes=250).isoformat(),
               created_to=ago(minutes=75).isoformat()) == [listing[2], listing[1]]
    assert ids(created_from="2999-01-01") == []


def test_list_pagination(api, admin_key, listing):
    admin = api.as_key(admin_key)
    pages = [admin.get("/api/v1/payments", params={"page": p, "page_size": 3}).json()
             for p in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [3, 1, 0]
    assert all(p["total"] == 4 and p["page_size"] == 3 for p in pages)
    seen = [i["id"] for p in pages for i in p["items"]]
    assert sorted(seen) == sorted(listing.values())


def test_user_lists_only_its_own(api, make_user_key, listing):
    mine = api.as_key(make_user_key(1)).get("/api/v1/payments").json()
    assert mine["total"] == 3
    assert {p["id"] for p in mine["items"]} == {listing[0], listing[1], listing[2]}
    own = api.as_key(make_user_key(1)).get("/api/v1/payments", params={"user_id": 1})
    assert own.json()["total"] == 3
    other = api.as_key(make_user_key(1)).get("/api/v1/payments", params={"user_id": 2})
    assert other.status_code == 403
    assert api.as_key(make_user_key(9)).get("/api/v1/payments").json()["total"] == 0


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=abc", "page=1.5", "page=99999999999", "page_size=0",
    "page_size=101", "page_size=x", "order_id=abc", "order_id=0", "order_id=-3",
    "user_id=1e3", "status=bogus", "status=INIT", "method=cash", "created_from=yesterday",
    "created_to=2025-13-45", "created_from=" + "1" * 50, "order_id=" + "9" * 30,
])
def test_bad_list_parameters_are_400(api, admin_key, clean_db, query):
    response = api.as_key(admin_key).get(f"/api/v1/payments?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_field"
    assert response.json()["detail"]


# --- pay -------------------------------------------------------------------------------

def wait_for_worker(res, payment_id: int) -> None:
    """The queued start has run and no message is left in flight for a later test to meet
    (ids restart with every test's TRUNCATE, so a leftover task would hit a stranger)."""
    def provider_reference():
        with res.uow() as uow:
            return uow.session.execute(select(Payment.provider_reference).where(
                Payment.id == payment_id)).scalar_one()

    wait_until(provider_reference, timeout=30, message="the worker's provider payment")
    wait_until(lambda: res.redis.llen("payments") == 0 and res.redis.hlen("unacked") == 0,
               timeout=30, message="payments queue drained")


def test_pay_accepts_init_with_202_and_a_worker_starts_it(user, clean_db, celery_worker):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id)
    response = user.post(f"/api/v1/payments/{payment_id}/pay")
    assert response.status_code == 202
    assert response.json()["id"] == payment_id
    wait_for_worker(clean_db, payment_id)
    assert events(clean_db, payment_id) == ["payment_start_requested", "payment_started"]


def test_pay_on_processing_is_an_idempotent_202(user, clean_db):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status="processing")
    response = user.post(f"/api/v1/payments/{payment_id}/pay")
    assert (response.status_code, response.json()["status"]) == (202, "processing")
    assert events(clean_db, payment_id) == []


@pytest.fixture
def quiet(quiet_app, clean_db, make_user_key):
    """(user 1's client, broker): the app whose queue no worker drains."""
    url, _, broker = quiet_app
    client = broker.client()
    client.flushdb()
    client.close()
    return Api(url, make_user_key(1)), broker


def snapshot(res, payment_id: int) -> tuple:
    """Everything a refused `pay` must leave as it was: the payment and order rows, audit."""
    with res.uow() as uow:
        payment = uow.session.execute(select(Payment.__table__).where(
            Payment.id == payment_id)).one()
        order = uow.session.execute(select(Order.__table__).where(
            Order.id == payment.order_id)).one()
    return tuple(payment), tuple(order), events(res, payment_id)


def test_pay_queues_one_start_on_the_quiet_broker(quiet, clean_db):
    """The control for the refusals below: what an accepted pay leaves in the queue."""
    user, broker = quiet
    payment_id = make_payment(clean_db, make_order(clean_db))
    assert user.post(f"/api/v1/payments/{payment_id}/pay").status_code == 202
    assert broker.queued("payments") == [{"task": "payments.initiate", "args": [payment_id]}]


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "expired", "refunded",
                                    "partially_refunded"])
def test_pay_is_refused_from_other_states(quiet, clean_db, status):
    user, broker = quiet
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status=status)
    before = snapshot(clean_db, payment_id)
    response = user.post(f"/api/v1/payments/{payment_id}/pay")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_not_payable"
    assert snapshot(clean_db, payment_id) == before
    assert broker.queued("payments") == []


def test_pay_after_expiry_is_409_and_expires_the_payment(quiet, clean_db):
    user, broker = quiet
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, created_at=ago(minutes=31),
                              expires_at=ago(minutes=1))
    response = user.post(f"/api/v1/payments/{payment_id}/pay")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_expired"
    assert status_of(clean_db, payment_id) == "expired"
    assert events(clean_db, payment_id) == ["payment_expired"]
    assert broker.queued("payments") == []


def test_pay_refuses_a_payment_whose_order_is_no_longer_pending(quiet, clean_db):
    user, broker = quiet
    order_id = make_order(clean_db, status="paid")
    payment_id = make_payment(clean_db, order_id)
    before = snapshot(clean_db, payment_id)
    response = user.post(f"/api/v1/payments/{payment_id}/pay")
    assert (response.status_code, response.json()["code"]) == (409, "order_not_payable")
    assert snapshot(clean_db, payment_id) == before
    assert broker.queued("payments") == []


# --- cancel ----------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["init", "processing"])
def test_cancel_then_cancel_again_is_idempotent(user, clean_db, start):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status=start)
    first = user.post(f"/api/v1/payments/{payment_id}/cancel", json={"reason": "no longer"})
    second = user.post(f"/api/v1/payments/{payment_id}/cancel")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == second.json()["status"] == "cancelled"
    assert events(clean_db, payment_id) == ["payment_cancelled"]


@pytest.mark.parametrize("status", ["succeeded", "failed", "expired", "refunded",
                                    "partially_refunded"])
def test_cancel_is_refused_when_not_cancellable(user, clean_db, status):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status=status)
    response = user.post(f"/api/v1/payments/{payment_id}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_not_cancellable"
    assert status_of(clean_db, payment_id) == status
    assert events(clean_db, payment_id) == []


@pytest.mark.parametrize(("raw", "code"), [
    ('{"reason": 5}', "invalid_field"), ('{"reason": "' + "r" * 501 + '"}', "invalid_field"),
    ("[]", "malformed_json"), ("{", "malformed_json"),
])
def test_bad_cancel_input_is_400_and_changes_nothing(user, clean_db, raw, code):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id)
    response = user.post(f"/api/v1/payments/{payment_id}/cancel", data=raw,
                         headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert status_of(clean_db, payment_id) == "init"


# --- retry -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
def test_retry_creates_the_next_attempt(user, clean_db, status):
    order_id = make_order(clean_db, total="50.00")
    old = make_payment(clean_db, order_id, amount="50.00", method="alipay", status=status,
                       created_at=ago(seconds=31))
    response = user.post(f"/api/v1/payments/{old}/retry")
    assert response.status_code == 201
    new = response.json()
    assert new["id"] != old
    assert (new["order_id"], new["attempt"], new["status"]) == (order_id, 2, "init")
    assert (new["amount"], new["method"], new["fee"]) == ("50.00", "alipay", "0.30")
    assert new["logs"][0]["event"] == "payment_created"
    assert new["logs"][0]["detail"]["retry_of"] == old
    assert status_of(clean_db, old) == status


@pytest.mark.parametrize("status", ["init", "processing", "succeeded", "refunded",
                                    "partially_refunded"])
def test_retry_refused_from_non_retryable_states(user, clean_db, status):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status=status, created_at=ago(minutes=5),
                              expires_at=datetime.now(UTC) + timedelta(minutes=25))
    response = user.post(f"/api/v1/payments/{payment_id}/retry")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_not_retryable"
    assert row_counts(clean_db)[2] == 1


def db_now(res) -> datetime:
    with res.uow() as uow:
        return uow.session.execute(select(func.clock_timestamp())).scalar_one()


# The gaps below are set half a second off a whole second of the database's clock, so
# Retry-After (the wait, rounded up) is one number as long as the row and the request
# take under half a second between them; the test checks that they did.
def test_retry_too_soon_is_429_with_retry_after(user, clean_db):
    order_id = make_order(clean_db)
    start = db_now(clean_db)
    old = make_payment(clean_db, order_id, status="failed",
                       created_at=start - timedelta(seconds=9.5))
    response = user.post(f"/api/v1/payments/{old}/retry")
    assert db_now(clean_db) - start < timedelta(seconds=0.5)
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "retry_too_soon"
    assert response.headers["Retry-After"] == "21"  # 30 s gap - 9.5 s and a bit, rounded up
    assert body["retry_after"] == 21
    assert row_counts(clean_db)[2] == 1

    # Retry-After is honest: once that much time has passed (moved back, not slept),
    # the retry is made.
    with clean_db.uow() as uow:
        uow.session.execute(update(Payment).where(Payment.id == old).values(
            created_at=Payment.created_at - timedelta(seconds=21)))
        uow.commit()
    assert user.post(f"/api/v1/payments/{old}/retry").status_code == 201


def test_retry_gap_counts_from_the_latest_attempt(user, clean_db):
    order_id = make_order(clean_db)
    first = make_payment(clean_db, order_id, status="failed", created_at=ago(minutes=10))
    start = db_now(clean_db)
    make_payment(clean_db, order_id, status="failed", attempt=2,
                 created_at=start - timedelta(seconds=4.5))
    response = user.post(f"/api/v1/payments/{first}/retry")
    assert db_now(clean_db) - start < timedelta(seconds=0.5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "26"


def test_at_most_three_retries_per_order(user, clean_db):
    order_id = make_order(clean_db)
    last = make_payment(clean_db, order_id, status="failed", created_at=ago(minutes=10))
    for attempt in (2, 3, 4):
        response = user.post(f"/api/v1/payments/{last}/retry")
        assert (response.status_code, response.json()["attempt"]) == (201, attempt)
        last = response.json()["id"]
        with clean_db.uow() as uow:  # fail it and move it back in time past the 30 s gap
            uow.session.execute(update(Payment).where(Payment.id == last).values(
                status="failed", created_at=ago(minutes=5 - attempt)))
            uow.commit()
    response = user.post(f"/api/v1/payments/{last}/retry")
    assert response.status_code == 409
    assert response.json()["code"] == "retry_limit"
    assert row_counts(clean_db)[2] == 4


def test_retry_returns_the_attempt_already_active(user, clean_db):
    order_id = make_order(clean_db)
    old = make_payment(clean_db, order_id, status="failed", created_at=ago(minutes=10))
    active = make_payment(clean_db, order_id, attempt=2, created_at=ago(minutes=1))
    response = user.post(f"/api/v1/payments/{old}/retry")
    assert (response.status_code, response.json()["id"]) == (200, active)


@pytest.mark.parametrize(("order_status", "age_hours", "code"), [
    ("paid", 1, "order_not_payable"), ("cancelled", 1, "order_not_payable"),
    ("pending", 25, "order_expired"),
])
def test_retry_needs_a_payable_order(user, clean_db, order_status, age_hours, code):
    order_id = make_order(clean_db, status=order_status, created_at=ago(hours=age_hours))
    old = make_payment(clean_db, order_id, status="failed", created_at=ago(minutes=10))
    response = user.post(f"/api/v1/payments/{old}/retry")
    assert (response.status_code, response.json()["code"]) == (409, code)
    assert row_counts(clean_db)[2] == 1


# --- the method catalog ----------------------------------------------------------------

def test_payment_methods_catalog(user):
    response = user.get("/api/v1/payment-methods")
    assert response.status_code == 200
    methods = {m["code"]: m for m in response.json()["items"]}
    assert set(methods) == {"wechat", "alipay", "bank_card", "balance", "credit_card",
                            "paypal", "crypto"}
    assert methods["wechat"] == {"code": "wechat", "name": "WeChat Pay", "enabled": True,
                                 "supports_qr": True, "refundable": True,
                                 "fee_rate": "0.006", "aliases": []}
    assert methods["bank_card"]["aliases"] == ["bank"]
    assert Decimal(methods["bank_card"]["fee_rate"]) == Decimal("0.008")
    assert [c for c, m in methods.items() if m["enabled"]] == ["wechat", "alipay", "bank_card",
                                                              "balance"]
