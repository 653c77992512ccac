"""GET /api/v1/events (DESIGN.md §9): every event of a run, in order, with a cursor that
works; each event written in the transaction of its change, carrying the object's API
view of that moment; the customer's notifications written with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from domain.statuses import PaymentStatus
from domain.webhook_models import Event, Notification
from services.expiry import expire_due_payments
from services.transitions import transition_payment
from tests.support.factories import make_order, make_payment
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def _all_pages(admin, **params: Any) -> tuple[list[dict], int]:
    items: list[dict] = []
    pages, after = 0, None
    while True:
        query = {**params, **({"after": after} if after else {})}
        response = admin.get("/api/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        items += page["items"]
        after = page["next_after"]
        if not page["has_more"]:
            return items, pages


def _same_view(event_object: dict, api_view: dict) -> None:
    """The event's object is the API's view: the same fields and values (timestamps
    compared as instants: the event says them in UTC). Not in an event: a payment's
    audit `logs`, and its `checkout_url`, the customer's signed link to the cashier page."""
    api_view = {k: v for k, v in api_view.items() if k not in ("logs", "checkout_url")}
    assert set(event_object) == set(api_view)
    for key, value in api_view.items():
        if key.endswith("_at") and value is not None:
            assert datetime.fromisoformat(event_object[key]) == datetime.fromisoformat(value)
        elif key == "history":
            assert [{**h, "at": None} for h in event_object[key]] == [
                {**h, "at": None} for h in value]
        else:
            assert event_object[key] == value, key


def test_every_event_of_a_run_in_order_with_a_working_cursor(flow, clean_db):
    admin = flow.admin
    paid, _ = flow.paid("100.00", user_id=7)  # payment.succeeded, order.paid
    cancelled = flow.payment(flow.order("20.00", user_id=7)["id"])
    assert admin.post(f"/api/v1/payments/{cancelled['id']}/cancel").status_code == 200
    due_order = make_order(clean_db, user_id=8)
    make_payment(clean_db, due_order, user_id=8,
                 expires_at=datetime.fromisoformat(paid["created_at"]).replace(year=2020))
    assert expire_due_payments(clean_db).changed == 1  # set-based: payment.expired
    refund = admin.post(f"/api/v1/payments/{paid['id']}/refunds", json={})
    assert refund.status_code == 202, refund.text
    flow.wait_refund(paid["id"], refund.json()["id"], "succeeded")  # refund, order.refunded

    expected = ["payment.succeeded", "order.paid", "payment.cancelled", "payment.expired",
                "refund.succeeded", "order.refunded"]
    items, pages = _all_pages(admin, limit=2)
    assert [e["type"] for e in items] == expected
    assert pages == 3
    with clean_db.uow() as uow:
        in_commit_order = [f"evt_{i}" for i in uow.session.scalars(
            select(Event.id).order_by(Event.txid, Event.id))]
    assert [e["id"] for e in items] == in_commit_order
    assert len({e["id"] for e in items}) == len(items)

    # The cursor from the middle, a type filter, and the end of the feed.
    middle = admin.get("/api/v1/events", params={"after": items[2]["id"]}).json()
    assert [e["type"] for e in middle["items"]] == expected[3:]
    only = admin.get("/api/v1/events", params={"type": "order.paid"}).json()["items"]
    assert [e["id"] for e in only] == [items[1]["id"]]
    end = admin.get("/api/v1/events", params={"after": items[-1]["id"]}).json()
    assert end == {"items": [], "has_more": False, "next_after": items[-1]["id"]}
    assert admin.get(f"/api/v1/events/{items[0]['id']}").json() == items[0]

    # Each object as the API showed it then: the cancelled payment has not moved since.
    cancelled_view = admin.get(f"/api/v1/payments/{cancelled['id']}").json()
    _same_view(items[2]["data"]["object"], cancelled_view)
    assert items[0]["data"]["object"]["status"] == "succeeded"  # not refunded: as it was
    order_view = admin.get(f"/api/v1/orders/{paid['order_id']}").json()
    _same_view(items[5]["data"]["object"], order_view)  # order.refunded is its last change
    assert items[1]["data"]["object"]["status"] == "paid"
    assert [h["to"] for h in items[1]["data"]["object"]["history"]] == ["pending", "paid"]
    refund_view = flow.refunds(paid["id"])[0]
    _same_view(items[4]["data"]["object"], refund_view)

    # The customer's notifications, written with the events: user 7's two, user 8's none.
    user7 = flow.admin.as_key(flow_user_key(clean_db, 7))
    mine = user7.get("/api/v1/notifications").json()["items"]
    assert [(n["type"], n["payment_id"], n["read"]) for n in mine] == [
        ("refund_succeeded", paid["id"], False), ("payment_succeeded", paid["id"], False)]
    user8 = flow.admin.as_key(flow_user_key(clean_db, 8))
    assert user8.get("/api/v1/notifications").json()["items"] == []
    assert user8.post(f"/api/v1/notifications/{mine[0]['id']}/read").status_code == 404
    read = user7.post(f"/api/v1/notifications/{mine[0]['id']}/read")
    assert read.status_code == 200 and read.json()["read"] is True
    again = user7.post(f"/api/v1/notifications/{mine[0]['id']}/read").json()
    assert again["read_at"] == read.json()["read_at"]
    unread = user7.get("/api/v1/notifications", params={"unread": "true"}).json()["items"]
    assert [n["id"] for n in unread] == [mine[1]["id"]]
    assert user7.get("/api/v1/notifications", params={"user_id": 8}).status_code == 403
    by_admin = admin.get("/api/v1/notifications", params={"user_id": 7}).json()["items"]
    assert [n["id"] for n in by_admin] == [n["id"] for n in mine]


def flow_user_key(res, user_id: int) -> str:
    from services.api_keys import create_api_key  # noqa: PLC0415

    return create_api_key(res.uow(), "user", user_id=user_id)


def test_an_event_commits_with_its_change_or_not_at_all(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db))

    def events() -> int:
        with clean_db.uow() as uow:
            return int(uow.session.scalar(select(func.count()).select_from(Event)))

    with clean_db.uow() as uow:  # the change rolled back: no event either
        assert transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED,
                                  actor="test", event="payment_cancelled") is not None
    assert events() == 0
    with clean_db.uow() as uow:  # a change the state machine refuses writes nothing
        assert transition_payment(uow.session, payment_id, PaymentStatus.REFUNDED,
                                  actor="test", event="refund_succeeded") is None
        uow.commit()
    assert events() == 0
    with clean_db.uow() as uow:
        transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED, actor="test",
                           event="payment_cancelled")
        uow.commit()
    assert events() == 1


def test_a_transaction_still_running_holds_back_the_feed_so_no_cursor_skips_it(
        api, admin_key, clean_db):
    """Ids are handed out before commit: the feed shows nothing a running transaction
    could still slip in before, and then everything in commit-safe order."""
    admin = api.as_key(admin_key)
    first, second = (make_payment(clean_db, make_order(clean_db)) for _ in range(2))
    slow = clean_db.uow()
    with slow:  # takes its event id first, commits last
        transition_payment(slow.session, first, PaymentStatus.CANCELLED, actor="test",
                           event="payment_cancelled")
        with clean_db.uow() as fast:
            transition_payment(fast.session, second, PaymentStatus.CANCELLED, actor="test",
                               event="payment_cancelled")
            fast.commit()
        shown = admin.get("/api/v1/events").json()["items"]
        assert shown == []  # the slow one's transaction is older and still running
        slow.commit()
    items = wait_until(lambda: admin.get("/api/v1/events").json()["items"], timeout=10,
                       message="both events visible")
    objects = [e["data"]["object"]["id"] for e in items]
    assert objects == [first, second]
    with clean_db.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_money_in_an_event_has_its_currency_s_decimals(clean_db):
    """1000 JPY is "1000", as the API writes it (domain.money.in_units), 100 CNY "100.00"."""
    payments = {currency: make_payment(clean_db, make_order(clean_db, total=total,
                                                            currency=currency),
                                       amount=total, currency=currency)
                for currency, total in (("JPY", "1000"), ("CNY", "100.00"))}
    with clean_db.uow() as uow:
        for payment_id in payments.values():
            transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED, actor="test",
                               event="payment_cancelled")
        uow.commit()
    with clean_db.uow() as uow:
        views = {e["object"]["currency"]: e["object"]
                 for e in uow.session.scalars(select(Event.data))}
    assert (views["JPY"]["amount"], views["JPY"]["fee"]) == ("1000", "0")
    assert (views["CNY"]["amount"], views["CNY"]["fee"]) == ("100.00", "0.00")
