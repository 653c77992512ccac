"""A provider's day set up on both sides, for the reconciliation tests: our books (rows as
the settlement leaves them) and the provider's (the double's or the sandbox's own rows),
so a test decides exactly where the two disagree. Nothing here is a fake of our code:
the run then fetches the real statement over HTTP and applies through the real
settlement."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert, update

from adapters.resources import Resources
from domain.models import Payment, Refund
from domain.money import to_minor_units
from standins.models import StandinOrder, StandinRefund
from standins.sandbox.models import SandboxPayment, SandboxRefund
from tests.support.factories import make_order, make_payment

# What each provider calls a paid order and a refund paid out.
PAID_STATUS = {"wechatpay": "SUCCESS", "alipay": "TRADE_SUCCESS"}
REFUNDED_STATUS = {"wechatpay": "SUCCESS", "alipay": "REFUND_SUCCESS"}
METHOD = {"wechatpay": "wechat", "alipay": "alipay", "sandbox": "bank_card"}


@dataclass
class Seeded:
    payment_id: int
    order_id: int
    out_trade_no: str
    transaction_id: str
    at_provider_id: int | None = None  # the double's / sandbox's row


class ProviderDay:
    def __init__(self, res: Resources, provider: str) -> None:
        self.res = res
        self.provider = provider
        settings = res.settings
        self.merchant = {"wechatpay": settings.wechatpay.mchid,
                         "alipay": settings.alipay.app_id}.get(provider) or ""

    # --- both sides ---------------------------------------------------------------------

    def payment(self, amount: str = "88.80", *, ours: str = "succeeded",
                provider_amount: str | None = None, at_provider: bool = True,
                paid_at: datetime | None = None) -> Seeded:
        """Our payment (`succeeded` with its transaction, or `processing` as when its
        callback never came) and, unless `at_provider` is False, the provider's paid
        record of it (for `provider_amount`, by default the same). `paid_at`: when both
        sides have it paid (by default now), so a test can put it on another day."""
        order_id = make_order(self.res, total=amount,
                              status="paid" if ours == "succeeded" else "pending")
        payment_id = make_payment(self.res, order_id, amount=amount, provider=self.provider,
                                  method=METHOD[self.provider], status=ours)
        out_trade_no = f"P{payment_id:010d}"
        transaction_id = "42" + "".join(secrets.choice("0123456789") for _ in range(26))
        values: dict[str, object] = {"out_trade_no": out_trade_no,
                                     "provider_reference": out_trade_no}
        if ours == "succeeded":
            values.update(transaction_id=transaction_id, paid_at=paid_at or datetime.now(UTC))
        with self.res.uow() as uow:
            uow.session.execute(update(Payment).where(Payment.id == payment_id)
                                .values(**values))
            uow.commit()
        seeded = Seeded(payment_id, order_id, out_trade_no, transaction_id)
        if at_provider:
            seeded.at_provider_id = self._paid_at_provider(
                seeded, Decimal(provider_amount or amount), paid_at or datetime.now(UTC))
        return seeded

    def refund(self, paid: Seeded, amount: str, *, ours: str = "processing",
               paid_out_at: datetime | None = None) -> int:
        """Our refund of a paid payment (`processing`: its notification never came) and
        the provider's record of it paid out (now, or at `paid_out_at`)."""
        with self.res.uow() as uow:
            refund_id = uow.session.execute(insert(Refund).values(
                payment_id=paid.payment_id, amount=Decimal(amount), currency="CNY",
                status=ours, reason="reconciliation test").returning(Refund.id)).scalar_one()
            uow.session.execute(update(Refund).where(Refund.id == refund_id)
                                .values(out_refund_no=f"R{refund_id:010d}"))
            now = paid_out_at or datetime.now(UTC)
            if self.provider == "sandbox":
                uow.session.add(SandboxRefund(
                    reference=f"rfd_{secrets.token_hex(8)}",
                    sandbox_payment_id=paid.at_provider_id, merchant_refund_id=refund_id,
                    amount=Decimal(amount), status="succeeded", created_at=now))
            else:
                uow.session.add(StandinRefund(
                    provider=self.provider, merchant=self.merchant,
                    order_id=paid.at_provider_id, out_refund_no=f"R{refund_id:010d}",
                    refund_ref="50" + secrets.token_hex(12), status=REFUNDED_STATUS[self.provider],
                    amount_minor=to_minor_units(Decimal(amount), "CNY"), finished_at=now))
            uow.commit()
        return int(refund_id)

    # --- the provider's side ------------------------------------------------------------

    def _paid_at_provider(self, seeded: Seeded, amount: Decimal, now: datetime) -> int:
        with self.res.uow() as uow:
            if self.provider == "sandbox":
                row_id = uow.session.execute(insert(SandboxPayment).values(
                    ticket=f"tkt_{secrets.token_hex(8)}", merchant_payment_id=seeded.payment_id,
                    amount=amount, currency="CNY", method="bank_card", status="succeeded",
                    transaction_id=seeded.transaction_id, decided_at=now)
                    .returning(SandboxPayment.id)).scalar_one()
            else:
                row_id = uow.session.execute(insert(StandinOrder).values(
                    provider=self.provider, merchant=self.merchant,
                    out_trade_no=seeded.out_trade_no,
                    amount_minor=to_minor_units(amount, "CNY"), currency="CNY",
                    description="reconciliation test", status=PAID_STATUS[self.provider],
                    transaction_id=seeded.transaction_id, pay_token=secrets.token_urlsafe(18),
                    paid_at=now).returning(StandinOrder.id)).scalar_one()
            uow.commit()
        return int(row_id)
