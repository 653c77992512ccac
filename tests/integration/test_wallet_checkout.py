"""The cashier page and the wallet (DESIGN.md §10): the wallet is offered, with its
balance, when the order's owner has one; choosing it pays at once; a top-up order never
offers it. Over real HTTP, no browser."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.payment_flow import PaymentFlow
from tests.support.wallets import balance, counts, credit

USER = 71


@pytest.fixture
def flow(api, admin_key, settings, clean_db, make_user_key) -> PaymentFlow:
    make_user_key(USER)
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def checkout(flow: PaymentFlow, total: str, **order_fields) -> tuple[int, str]:
    order = flow.admin.post("/api/v1/orders", json={"total_amount": total, "user_id": USER,
                                                    **order_fields}).json()
    payment = flow.payment(order["id"], "wechat")
    url = urlsplit(payment["checkout_url"])
    return payment["id"], parse_qs(url.query)["token"][0]


def page(flow: PaymentFlow, payment_id: int, token: str, lang: str = "en") -> str:
    response = flow.customer.get(f"/checkout/{payment_id}?token={token}",
                                 headers={"Accept-Language": lang})
    assert response.status_code == 200, response.text
    return response.text


def test_the_wallet_is_offered_with_its_balance_and_pays_at_once(flow, clean_db):
    pid, token = checkout(flow, "30.00")
    assert 'value="balance"' not in page(flow, pid, token)  # no wallet yet

    credit(flow.admin, USER, "45.50")
    html = page(flow, pid, token)
    assert 'value="balance"' in html
    assert '<span class="wallet-balance" id="wallet-balance">Balance 45.50 CNY</span>' in html
    assert "余额支付" in page(flow, pid, token, lang="zh-CN") and "余额 45.50" in page(
        flow, pid, token, lang="zh-CN")

    paid = flow.customer.post(f"/checkout/{pid}/pay?token={token}", json={"method": "balance"})
    assert paid.status_code == 202, paid.text  # the page's own contract; already settled
    assert (paid.json()["status"], paid.json()["method"]) == ("succeeded", "balance")
    assert balance(clean_db, USER) == Decimal("15.50")
    detail = flow.get(pid)
    assert [e["event"] for e in detail["logs"]] == [
        "payment_created", "payment_method_changed", "payment_succeeded"]
    assert detail["provider"] == "wallet"


def test_not_enough_on_the_page_is_409_and_the_payment_stays_as_it_was(flow, clean_db):
    credit(flow.admin, USER, "5.00")
    pid, token = checkout(flow, "30.00")
    before = counts(clean_db)
    paid = flow.customer.post(f"/checkout/{pid}/pay?token={token}", json={"method": "balance"})
    assert paid.status_code == 409, paid.text
    assert (paid.json()["code"], paid.json()["balance"]) == ("insufficient_balance", "5.00")
    # The method switch is its own step, committed before the pay: the customer can pick
    # another method and pay; nothing of the wallet moved.
    assert counts(clean_db)["entries"] == before["entries"]
    assert balance(clean_db, USER) == Decimal("5.00")
    assert flow.get(pid)["status"] == "init"


def test_a_topup_order_never_offers_the_wallet(flow, clean_db):
    credit(flow.admin, USER, "10.00")
    pid, token = checkout(flow, "30.00", purpose="wallet_topup")
    assert 'value="balance"' not in page(flow, pid, token)
    refused = flow.customer.post(f"/checkout/{pid}/pay?token={token}",
                                 json={"method": "balance"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "unsupported_method"
    assert flow.get(pid)["method"] == "wechat"
