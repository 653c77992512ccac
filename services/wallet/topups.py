"""Top-up orders (DESIGN.md §10): an order with purpose wallet_topup, paid by any method
but the balance, credits its user's wallet in the transaction that makes it paid.
Refunding it takes the money back out, at the moment the refund is requested, so the
wallet cannot spend it while the provider pays it back; if the money is no longer
there it is 409 topup_already_spent and nothing is written. A refund that then fails
gives the money back to the wallet.

Each is called inside the settlement or refund transaction, after the order's and
the payment's row locks (the one lock order: order, payment, wallet).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from adapters.metrics import WALLET_REFUSALS
from domain.models import Order
from domain.wallet import EntryKind, OrderPurpose, TopupAlreadySpent
from domain.wallet_models import WalletEntry
from services.audit import record_event
from services.review_flags import flag_payment
from services.wallet.ledger import Entry, lock_wallet, post_entry

_ORDER_PURPOSE = select(Order.purpose, Order.user_id).where(Order.id == bindparam("id"))
_TOPUP_CREDITED = select(exists().where(WalletEntry.payment_id == bindparam("payment_id"),
                                        WalletEntry.kind == EntryKind.TOPUP.value))
# Each on its partial unique index (amount < 0, amount > 0): cheap for every refund.
_TAKEN_FOR_REFUND = (select(WalletEntry.user_id, WalletEntry.amount)
                     .where(WalletEntry.refund_id == bindparam("refund_id"),
                            WalletEntry.amount < 0))
_GIVEN_BACK_FOR_REFUND = select(exists().where(WalletEntry.refund_id == bindparam("refund_id"),
                                               WalletEntry.amount > 0))


def credit_topup(session: Session, *, order_id: int, payment_id: int, amount: Decimal,
                 actor: str) -> Entry | None:
    """The order just became paid by `payment_id`: if it is a top-up, the wallet gets
    `amount` (a `topup` entry). None for any other order."""
    order = session.execute(_ORDER_PURPOSE, {"id": order_id}).one()
    if order.purpose != OrderPurpose.WALLET_TOPUP:
        return None
    return post_entry(session, order.user_id, EntryKind.TOPUP, amount, actor=actor,
                      payment_id=payment_id, reason=f"top-up order {order_id} paid")


def take_back_topup(session: Session, *, user_id: int, payment_id: int, refund_id: int,
                    amount: Decimal, actor: str) -> Entry | None:
    """A refund of a payment that credited a top-up: the wallet gives `amount` back now
    (a negative `refund` entry), or 409 topup_already_spent when it no longer holds it.
    None when the payment credited nothing (not a top-up, or money that came late for
    an order already closed: that refund never touches the wallet)."""
    if not session.execute(_TOPUP_CREDITED, {"payment_id": payment_id}).scalar_one():
        return None
    balance = lock_wallet(session, user_id)
    if balance < amount:
        WALLET_REFUSALS.labels(TopupAlreadySpent.default_code).inc()
        raise TopupAlreadySpent(balance, amount)
    return post_entry(session, user_id, EntryKind.REFUND, -amount, actor=actor,
                      payment_id=payment_id, refund_id=refund_id, locked_balance=balance,
                      reason=f"refund {refund_id} of top-up payment {payment_id}")


def restore_after_failed_refund(session: Session, refund_id: int, *,
                                actor: str) -> Entry | None:
    """The provider did not pay a top-up's refund: the money taken out for it goes back
    into the wallet, once (a unique index allows one entry each way per refund)."""
    taken = session.execute(_TAKEN_FOR_REFUND, {"refund_id": refund_id}).first()
    if taken is None or session.execute(_GIVEN_BACK_FOR_REFUND,
                                        {"refund_id": refund_id}).scalar_one():
        return None
    return post_entry(session, taken.user_id, EntryKind.REFUND, -taken.amount,
                      actor=actor, refund_id=refund_id,
                      reason=f"refund {refund_id} failed: the top-up is back in the wallet")


def review_if_given_back(session: Session, *, refund_id: int, payment_id: int,
                         actor: str) -> bool:
    """A refund reported succeeded after it had failed (the money did leave us, §6): if
    its top-up had been given back to the wallet, the user now has it twice. Taking it
    out again could overdraw the wallet, so a person decides: the payment is flagged for
    review with an audit row. True when flagged."""
    if not session.execute(_GIVEN_BACK_FOR_REFUND, {"refund_id": refund_id}).scalar_one():
        return False
    flag_payment(session, payment_id)
    record_event(session, "topup_refund_succeeded_after_give_back", payment_id=payment_id,
                 actor=actor, refund_id=refund_id,
                 reason="the refund succeeded after its top-up was put back in the wallet")
    return True
