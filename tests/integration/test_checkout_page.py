"""The cashier page over real HTTP, without a browser (the browser walks it in
tests/e2e/test_checkout_browser.py).

- every payment view carries a checkout_url, and it opens that payment's page with no key;
- a wrong, missing or expired token is 404 on every checkout endpoint, and one payment's
  token never shows another payment;
- labels follow Accept-Language; nothing on the page is fetched from elsewhere;
- Pay with another method starts the payment with that method, and the QR code is an
  image drawn by us; Retry makes a new attempt with its own link.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(""", re.I)


@pytest.fixture
def flow(api, admin_key, settings, clean_db) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def new_checkout(flow: PaymentFlow, total: str = "100.00", user_id: int = 1,
                 method: str = "wechat") -> tuple[dict, dict]:
    order = flow.order(total, user_id)
    return order, flow.payment(order["id"], method)


def test_every_payment_view_has_a_checkout_url_that_opens_its_page_without_a_key(
        flow, settings):
    order, payment = new_checkout(flow, "88.80")

    url = payment["checkout_url"]
    assert url.startswith(f"{settings.public_base_url}/checkout/{payment['id']}?token=")
    assert flow.get(payment["id"])["checkout_url"] == url  # stable while the payment lives
    listed = flow.admin.get(f"/api/v1/payments?order_id={order['id']}").json()["items"]
    assert [p["checkout_url"] for p in listed] == [url]

    page = flow.customer.get(path_of(url))

    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    html = page.text
    number = order["order_number"]  # ORD-20261201-B2F2EBBF82B9: three unbreakable groups
    assert f'data-value="{number}"' in html
    prefix, day, rest = number.split("-")
    assert (f'<span class="group">{prefix}-</span><span class="group">{day}-</span>'
            f'<span class="group">{rest}</span>') in html
    assert '<span id="amount">88.80</span> <span id="currency">CNY</span>' in html
    for enabled in ('value="wechat"', 'value="alipay"', 'value="bank_card"'):
        assert enabled in html
    # Not enabled; nor the wallet, which this user does not have (test_wallet_checkout.py).
    for disabled in ("paypal", "crypto", "credit_card", "balance"):
        assert f'value="{disabled}"' not in html
    assert 'data-status="init"' in html


def test_wrong_missing_or_foreign_tokens_are_404_everywhere(flow):
    _, payment = new_checkout(flow)
    pid, token = payment["id"], token_of(payment["checkout_url"])
    wrong = ("0" if token[0] != "0" else "1") + token[1:]

    for query in (f"?token={wrong}", "", "?token=", f"?token={token[:-1]}"):
        page = flow.customer.get(f"/checkout/{pid}{query}")
        assert page.status_code == 404 and page.headers["Content-Type"].startswith(
            "text/html"), query
        assert "88" not in page.text and str(payment["amount"]) not in page.text
        for method, endpoint in (("GET", "status"), ("GET", "qr.svg"), ("POST", "pay"),
                                 ("POST", "retry")):
            answer = flow.customer.request(method, f"/checkout/{pid}/{endpoint}{query}")
            assert answer.status_code == 404, (endpoint, query)
            assert answer.json()["code"] == "payment_not_found"
    # The right token on a payment id that does not exist: the same 404.
    assert flow.customer.get(f"/checkout/{pid + 1000}?token={token}").status_code == 404
    assert flow.get(pid)["status"] == "init"  # nothing was started by the refused POSTs


def test_one_payments_token_never_shows_another_payment(flow):
    order_a, a = new_checkout(flow, "11.11", user_id=1)
    order_b, b = new_checkout(flow, "22.22", user_id=2)
    token_a, token_b = token_of(a["checkout_url"]), token_of(b["checkout_url"])
    assert token_a != token_b

    for pid, token, other_order in ((a["id"], token_b, order_b), (b["id"], token_a, order_a)):
        page = flow.customer.get(f"/checkout/{pid}?token={token}")
        assert page.status_code == 404
        assert other_order["order_number"] not in page.text
        assert other_order["total_amount"] not in page.text
        status = flow.customer.get(f"/checkout/{pid}/status?token={token}")
        assert status.status_code == 404 and "payment_id" not in status.json()

    own = flow.customer.get(path_of(b["checkout_url"])).text
    assert order_b["order_number"] in own and "22.22" in own
    assert order_a["order_number"] not in own and "11.11" not in own


def test_an_expired_payments_link_is_404(flow):
    _, payment = new_checkout(flow)
    old_url = payment["checkout_url"]
    assert flow.customer.get(path_of(old_url)).status_code == 200

    # The payment's time runs out (moved back in the database, not waited for).
    flow.move_back("payments", payment["id"], 3600, "created_at", "updated_at", "expires_at")
    new_url = flow.get(payment["id"])["checkout_url"]  # signed over the new expires_at

    for url in (old_url, new_url):
        assert flow.customer.get(path_of(url)).status_code == 404
        status = flow.customer.get(path_of(url).replace("?", "/status?"))
        assert status.status_code == 404 and status.json()["code"] == "payment_not_found"


def test_labels_follow_accept_language(flow):
    _, payment = new_checkout(flow)
    path = path_of(payment["checkout_url"])

    zh = flow.customer.get(path, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert '<html lang="zh-CN">' in zh
    for label in ("收银台", "订单号", "金额", "支付方式", "立即支付", "微信支付", "支付宝"):
        assert label in zh, label
    assert "Payment method" not in zh

    for header in ({"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}, {}):
        en = flow.customer.get(path, headers=header).text
        assert '<html lang="en">' in en
        for label in ("Checkout", "Order", "Payment method", "Pay ", "WeChat Pay", "Alipay"):
            assert label in en, label
        assert "收银台" not in en

    dead = flow.customer.get(f"/checkout/{payment['id']}?token=x",
                             headers={"Accept-Language": "zh-TW"})
    assert dead.status_code == 404 and "该支付链接无效或已过期" in dead.text


def test_the_page_fetches_nothing_from_elsewhere(flow):
    _, payment = new_checkout(flow)
    html = flow.customer.get(path_of(payment["checkout_url"])).text

    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert sorted(assets) == ["/static/checkout.css", "/static/checkout.js"]
    for asset in assets:
        served = flow.customer.get(asset)
        assert served.status_code == 200, asset
        assert not EXTERNAL.search(served.text), asset
    assert "<meta name=\"viewport\"" in html  # laid out for a phone's width


def test_pay_with_another_method_starts_it_and_the_qr_code_is_our_image(
        flow, celery_worker):
    _, payment = new_checkout(flow, method="wechat")
    pid, token = payment["id"], token_of(payment["checkout_url"])

    paid = flow.customer.post(f"/checkout/{pid}/pay?token={token}", json={"method": "alipay"})

    assert paid.status_code == 202, paid.text
    assert paid.json()["method"] == "alipay"
    started = wait_until(
        lambda: (s := flow.customer.get(f"/checkout/{pid}/status?token={token}").json())[
            "pay_url"] and s, timeout=30, message="the payment started")
    assert (started["status"], started["has_qr"], started["method"]) == (
        "processing", True, "alipay")
    assert started["seconds_left"] > 1700
    assert flow.at_provider(started["pay_url"])["method"] == "alipay"
    detail = flow.get(pid)
    assert (detail["method"], detail["fee"]) == ("alipay", "0.60")
    assert [e["event"] for e in detail["logs"]] == [
        "payment_created", "payment_method_changed", "payment_start_requested",
        "payment_started"]

    qr = flow.customer.get(f"/checkout/{pid}/qr.svg?token={token}")
    assert qr.status_code == 200
    assert qr.headers["Content-Type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg") and "<path" in qr.text
    # Started: the method is fixed now, and paying again is the same answer.
    again = flow.customer.post(f"/checkout/{pid}/pay?token={token}", json={"method": "wechat"})
    assert again.status_code == 409 and again.json()["code"] == "payment_not_payable"
    assert flow.customer.post(f"/checkout/{pid}/pay?token={token}").status_code == 202
    flow.settle(started["pay_url"])


def test_retry_from_the_page_makes_a_new_attempt_with_its_own_link(flow):
    order, first = new_checkout(flow)
    pid, token = first["id"], token_of(first["checkout_url"])
    cancelled = flow.admin.post(f"/api/v1/payments/{pid}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text

    status = flow.customer.get(f"/checkout/{pid}/status?token={token}").json()
    assert (status["status"], status["can_retry"]) == ("cancelled", True)
    too_soon = flow.customer.post(f"/checkout/{pid}/retry?token={token}")
    assert too_soon.status_code == 429 and too_soon.json()["code"] == "retry_too_soon"
    flow.move_back("payments", pid, 31, "created_at")

    retried = flow.customer.post(f"/checkout/{pid}/retry?token={token}")

    assert retried.status_code == 201, retried.text
    second_id = retried.json()["payment_id"]
    assert second_id != pid
    second = flow.get(second_id)
    assert (second["attempt"], second["order_id"], second["status"]) == (2, order["id"], "init")
    assert retried.json()["checkout_url"] == second["checkout_url"]
    assert second["logs"][0]["actor"] == "checkout:user:1"
    page = flow.customer.get(path_of(second["checkout_url"]))
    assert page.status_code == 200 and 'data-status="init"' in page.text
    # The first attempt's page still shows its own (cancelled) payment; Retry there (a
    # second tab, say) leads to the attempt already open, never to a third.
    old = flow.customer.get(f"/checkout/{pid}/status?token={token}").json()
    assert (old["payment_id"], old["status"]) == (pid, "cancelled")
    again = flow.customer.post(f"/checkout/{pid}/retry?token={token}")
    assert again.status_code == 200, again.text
    assert again.json()["checkout_url"] == second["checkout_url"]


def test_the_page_names_the_shop_and_asks_for_the_method_once(flow):
    _, payment = new_checkout(flow)
    path = path_of(payment["checkout_url"])
    en = flow.customer.get(path).text
    assert 'id="shop-name">Demo shop<' in en
    assert 'class="logo monogram"' in en and "/checkout/shop-logo" not in en
    shown = en.split('<script id="checkout-config"')[0]  # the page, not its script's labels
    assert shown.count("Payment method") == 1  # the chooser's legend, no second row
    zh = flow.customer.get(path, headers={"Accept-Language": "zh-CN"}).text
    assert zh.split('<script id="checkout-config"')[0].count("支付方式") == 2  # legend + pending
    assert "安全支付" in zh
    assert flow.customer.get("/checkout/shop-logo").status_code == 404


def test_a_configured_shop_name_and_logo_are_shown_and_served_locally(
        flow, settings, clean_db, tmp_path):
    import dataclasses  # noqa: PLC0415

    from tests.support.live_server import Api  # noqa: PLC0415
    from tests.support.private_stack import serve_app  # noqa: PLC0415

    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
                    '<rect width="8" height="8" fill="#c00"/></svg>')
    shop = dataclasses.replace(settings, shop_name="Lotus Tea House", shop_logo_file=logo)
    _, payment = new_checkout(flow)
    with serve_app(shop) as (url, _res):
        page = Api(url).get(path_of(payment["checkout_url"])).text
        assert 'id="shop-name">Lotus Tea House<' in page
        assert 'src="/checkout/shop-logo"' in page and "monogram" not in page
        served = Api(url).get("/checkout/shop-logo")
        assert served.status_code == 200
        assert served.headers["Content-Type"].startswith("image/svg+xml")
        assert served.content == logo.read_bytes()
