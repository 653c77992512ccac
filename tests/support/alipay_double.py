"""The Alipay double as a test meets it over HTTP: the buyer's pay page, the double's
test views, and notifications signed with the double's own key (to build the ones the
double would never send: tampered, for another app, with another amount)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from standins.alipay.crypto import signed_notification
from standins.alipay.keys import load_double_keys
from tests.support.live_server import Api
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until

WAIT = 30
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def start_alipay_payment(flow: PaymentFlow, total: str = "88.80"
                         ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An order and its alipay payment, paid for at Alipay's precreate: (order, payment
    as our API shows it, the pay_url that Alipay's qr_code leads to)."""
    order = flow.order(total)
    payment = flow.payment(order["id"], "alipay")
    pay_url = flow.pay(payment["id"])
    return order, flow.get(payment["id"]), pay_url


class AlipayDouble:
    def __init__(self, api: Api, run_dir: Path) -> None:
        self.api = api.as_key(None)
        self.keys = load_double_keys(run_dir)

    # --- the buyer ------------------------------------------------------------------------

    def scan(self, pay_url: str) -> dict[str, Any]:
        response = self.api.http.get(pay_url, headers={"Accept": "application/json"},
                                     timeout=WAIT)
        assert response.status_code == 200, response.text
        return response.json()

    def press(self, pay_url: str, button: str, **form: str) -> dict[str, Any]:
        response = self.api.http.post(f"{pay_url}/{button}", data=form, timeout=WAIT,
                                      headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        return response.json()

    # --- the double's own view --------------------------------------------------------------

    def trade(self, out_trade_no: str) -> dict[str, Any]:
        response = self.api.get(f"/doubles/alipay/test/trades/{out_trade_no}")
        assert response.status_code == 200, response.text
        return response.json()

    def refuse_next_refund(self, out_trade_no: str, sub_code: str) -> None:
        response = self.api.post(f"/doubles/alipay/test/trades/{out_trade_no}/refund-refusal",
                                 json={"sub_code": sub_code})
        assert response.status_code == 200, response.text

    def notifications(self) -> list[dict[str, Any]]:
        response = self.api.get("/doubles/alipay/test/notifications")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def wait_delivered(self, count: int) -> list[dict[str, Any]]:
        return wait_until(lambda: (items := self.notifications()) and len(items) >= count
                          and all(n["status"] == "delivered" for n in items) and items,
                          timeout=WAIT, message=f"{count} Alipay notifications delivered")

    # --- notifications made by hand -------------------------------------------------------

    def fields(self, trade: dict[str, Any], **changes: str | None) -> dict[str, str]:
        """A TRADE_SUCCESS notification of this trade, as the double would send it."""
        base = {"notify_id": "hand" + secrets.token_hex(12), "notify_type": "trade_status_sync",
                "notify_time": "2026-12-01 16:45:03", "app_id": self.keys.app_id,
                "charset": "utf-8", "version": "1.0", "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"], "trade_status": "TRADE_SUCCESS",
                "total_amount": f"{trade['amount_minor'] / 100:.2f}",
                "gmt_payment": "2026-12-01 16:45:00"}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, fields: dict[str, str]) -> dict[str, str]:
        return signed_notification(fields, self.keys.alipay_private_key)

    def post(self, form: dict[str, str]) -> requests.Response:
        return self.api.post("/callbacks/alipay", data=urlencode(form).encode(), headers=FORM)
