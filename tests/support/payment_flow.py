"""Walking a payment through the real stack in tests: our API, the sandbox provider's pay page
and merchant API, a real worker. Every step is an HTTP request, as a shop and its customer
would make it; the helpers only wait and read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from adapters.resources import Resources
from domain.models import Payment, PaymentEvent, ProviderCallback
from tests.support.live_server import Api
from tests.support.processes import wait_until

WAIT = 30  # seconds; generous for a shared, busy machine


class PaymentFlow:
    def __init__(self, api: Api, admin_key: str, merchant_key: str, res: Resources) -> None:
        self.admin = api.as_key(admin_key)
        self.merchant = api.as_key(merchant_key)  # the sandbox's merchant API
        self.customer = api.as_key(None)  # the pay page needs no key
        self.res = res

    # --- our API --------------------------------------------------------------------------

    def order(self, total: str = "100.00", user_id: int = 1) -> dict[str, Any]:
        response = self.admin.post("/api/v1/orders",
                                    json={"total_amount": total, "user_id": user_id})
        assert response.status_code == 201, response.text
        return response.json()

    def payment(self, order_id: int, method: str = "wechat") -> dict[str, Any]:
        response = self.admin.post("/api/v1/payments",
                                   json={"order_id": order_id, "method": method})
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, payment_id: int) -> dict[str, Any]:
        response = self.admin.get(f"/api/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def get_order(self, order_id: int) -> dict[str, Any]:
        response = self.admin.get(f"/api/v1/orders/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def pay(self, payment_id: int) -> str:
        """POST pay, then the pay_url once the worker has it from the provider."""
        response = self.admin.post(f"/api/v1/payments/{payment_id}/pay")
        assert response.status_code == 202, response.text
        return wait_until(lambda: self.get(payment_id)["pay_url"], timeout=WAIT,
                          message=f"pay_url of payment {payment_id}")

    def wait_status(self, payment_id: int, status: str) -> dict[str, Any]:
        return wait_until(lambda: (p := self.get(payment_id))["status"] == status and p,
                          timeout=WAIT, message=f"payment {payment_id} {status}")

    def refunds(self, payment_id: int) -> list[dict[str, Any]]:
        response = self.admin.get(f"/api/v1/payments/{payment_id}/refunds")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def wait_refund(self, payment_id: int, refund_id: int, status: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            found = [r for r in self.refunds(payment_id) if r["id"] == refund_id]
            return found[0] if found and found[0]["status"] == status else None
        return wait_until(finished, timeout=WAIT, message=f"refund {refund_id} {status}")

    # --- the sandbox ----------------------------------------------------------------------

    @staticmethod
    def ticket(pay_url: str) -> str:
        return pay_url.rstrip("/").rsplit("/", 1)[-1]

    def press(self, pay_url: str, button: str) -> None:
        """The customer's Approve or Decline on the pay page (a form POST)."""
        response = self.customer.http.post(f"{pay_url}/{button}", allow_redirects=False,
                                           timeout=WAIT)
        assert response.status_code == 303, response.text

    def test_options(self, pay_url: str, **options: Any) -> None:
        response = self.merchant.post(
            f"/sandbox/api/payments/{self.ticket(pay_url)}/test-options", json=options)
        assert response.status_code == 200, response.text

    def at_provider(self, pay_url: str) -> dict[str, Any]:
        response = self.merchant.get(f"/sandbox/api/payments/{self.ticket(pay_url)}")
        assert response.status_code == 200, response.text
        return response.json()

    def deliveries(self, pay_url: str) -> list[dict[str, Any]]:
        response = self.merchant.get(
            f"/sandbox/api/payments/{self.ticket(pay_url)}/deliveries")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def paid(self, total: str = "100.00", user_id: int = 1,
             method: str = "wechat") -> tuple[dict[str, Any], str]:
        """An order paid the whole way round: (the payment, its pay_url)."""
        order = self.order(total, user_id)
        payment = self.payment(order["id"], method)
        pay_url = self.pay(payment["id"])
        self.press(pay_url, "approve")
        return self.wait_status(payment["id"], "succeeded"), pay_url

    # --- settling down --------------------------------------------------------------------

    def settle(self, *pay_urls: str) -> None:
        """Every callback of these tickets delivered and applied, every queue empty: no
        task is left to act after the test (acks_late: unacked means still running)."""
        for pay_url in pay_urls:
            wait_until(lambda u=pay_url: all(d["status"] == "delivered"
                                             for d in self.deliveries(u)),
                       timeout=WAIT, message="sandbox deliveries delivered")
        wait_until(self._idle, timeout=WAIT, message="inbox processed and queues drained")

    def _idle(self) -> bool:
        with self.res.uow() as uow:
            waiting = uow.session.execute(
                select(func.count()).select_from(ProviderCallback)
                .where(ProviderCallback.status == "received")).scalar_one()
        redis = self.res.redis
        return (waiting == 0 and redis.hlen("unacked") == 0
                and all(redis.llen(q) == 0 for q in ("callbacks", "payments", "maintenance")))

    # --- reading the audit trail and moving the clock -------------------------------------

    def events(self, payment_id: int) -> list[tuple[str, str]]:
        """(event, actor) of the payment's audit rows, oldest first."""
        with self.res.uow() as uow:
            rows = uow.session.execute(
                select(PaymentEvent.event, PaymentEvent.actor)
                .where(PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id)).all()
        return [(r.event, r.actor) for r in rows]

    def move_back(self, table: str, row_id: int, seconds: int, *columns: str) -> None:
        """Pretend time passed: these timestamps of one row become `seconds` earlier."""
        assignments = ", ".join(f"{c} = {c} - make_interval(secs => :s)" for c in columns)
        with self.res.uow() as uow:
            uow.session.execute(text(f"UPDATE {table} SET {assignments} WHERE id = :id"),
                                {"s": seconds, "id": row_id})
            uow.commit()


def success_times(res: Resources, payment_id: int) -> tuple[datetime | None, datetime | None]:
    """(provider_paid_at, paid_at): the provider's time of a payment's success, and ours."""
    with res.uow() as uow:
        row = uow.session.execute(select(Payment.provider_paid_at, Payment.paid_at)
                                  .where(Payment.id == payment_id)).one()
    return row.provider_paid_at, row.paid_at
