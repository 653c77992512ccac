"""Walking a WeChat Pay payment through the doubles stack: our API (PaymentFlow's), the
double's pay page, its notifications, and a real worker. Every step is HTTP, as a shop
and its customer would make it; the helpers only wait and read."""

from __future__ import annotations

import copy
from typing import Any

import requests
from sqlalchemy import func, select

from domain.models import ProviderCallback
from standins.models import StandinOrder, StandinRefund
from standins.notifications import notification_views
from standins.wechatpay.notify import render_notification
from tests.support.payment_flow import WAIT, PaymentFlow
from tests.support.processes import wait_until

__all__ = ["WAIT", "WechatFlow"]


class WechatFlow(PaymentFlow):
    def __init__(self, stack: Any) -> None:
        # No sandbox merchant key: the double is reached only through our connector.
        super().__init__(stack.api, stack.admin_key(), "", stack.resources)
        self.stack = stack
        self.http = requests.Session()

    def started(self, total: str = "88.80") -> tuple[dict[str, Any], str]:
        """A payment started at WeChat Pay: (its view, now with out_trade_no; pay_url)."""
        payment = self.payment(self.order(total)["id"], "wechat")
        pay_url = self.pay(payment["id"])
        return self.get(payment["id"]), pay_url

    def refund(self, payment_id: int, amount: str, reason: str = "customer asked"
               ) -> dict[str, Any]:
        response = self.admin.post(f"/api/v1/payments/{payment_id}/refunds",
                                   json={"amount": amount, "reason": reason})
        assert response.status_code == 202, response.text
        return response.json()

    def event_names(self, payment_id: int) -> list[str]:
        return [event for event, _ in self.events(payment_id)]

    def inbox(self, event_id: str) -> list[ProviderCallback]:
        with self.res.uow() as uow:
            rows = list(uow.session.scalars(select(ProviderCallback).where(
                ProviderCallback.provider == "wechatpay",
                ProviderCallback.event_id == event_id)))
            uow.session.expunge_all()
            return rows

    def idle(self) -> None:
        def quiet() -> bool:
            with self.res.uow() as uow:
                waiting = uow.session.execute(
                    select(func.count()).select_from(ProviderCallback)
                    .where(ProviderCallback.status == "received")).scalar_one()
            return waiting == 0 and self.res.redis.hlen("unacked") == 0
        wait_until(quiet, timeout=WAIT, message="inbox processed")

    # --- the double -------------------------------------------------------------------

    def press(self, pay_url: str, button: str, *, notify: bool = True) -> None:
        data = {} if notify else {"notify": "0"}
        response = self.http.post(f"{pay_url}/{button}", data=data, allow_redirects=False,
                                  timeout=WAIT)
        assert response.status_code == 303, response.text

    def at_double(self, out_trade_no: str) -> StandinOrder:
        with self.res.uow() as uow:
            order = uow.session.scalars(select(StandinOrder).where(
                StandinOrder.provider == "wechatpay",
                StandinOrder.out_trade_no == out_trade_no)).one()
            uow.session.expunge(order)
            return order

    def refunds_at_double(self) -> list[StandinRefund]:
        with self.res.uow() as uow:
            rows = list(uow.session.scalars(select(StandinRefund).where(
                StandinRefund.provider == "wechatpay").order_by(StandinRefund.id)))
            uow.session.expunge_all()
            return rows

    def notifications(self) -> list[dict[str, Any]]:
        with self.res.uow() as uow:
            return notification_views(uow.session, "wechatpay")

    def wait_delivered(self, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(lambda: (n := self.notifications()) and len(n) >= count and all(
            x["status"] == "delivered" for x in n) and n, timeout=WAIT,
            message="the double's notifications delivered")

    def render(self, payload: dict[str, Any], **kwargs: Any) -> tuple[dict[str, str], bytes]:
        """A notification exactly as the double would send it (its keys, fresh nonce)."""
        return render_notification(self.stack.settings, copy.deepcopy(payload), **kwargs)

    def post_callback(self, headers: dict[str, str], body: bytes) -> requests.Response:
        return self.http.post(self.stack.live_url + "/callbacks/wechatpay", data=body,
                              headers=headers, timeout=WAIT)
