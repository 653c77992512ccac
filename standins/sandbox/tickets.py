"""The sandbox's payments ("tickets"): create, read, close, approve/decline, test knobs.

One transaction per call, the ticket's row locked while it changes; callbacks
are stored in the same transaction and enqueued after commit (delivery.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import Conflict, InvalidInput, NotFound
from domain.ids import parse_positive_id
from domain.methods import ALIASES, CATALOG
from domain.money import parse_amount, parse_currency
from services.transitions import utc_now
from standins.sandbox import delivery, events
from standins.sandbox.models import SandboxPayment
from standins.sandbox.options import TestOptions, apply_test_options

PAY_PATH = "/sandbox/pay/"
MAX_TICKET_LENGTH = 64


@dataclass(frozen=True)
class CreateResult:
    view: dict[str, Any]
    created: bool


def positive_id(value: object, field: str) -> int:
    """A JSON integer or a string of digits, within BIGINT (400 otherwise)."""
    number = parse_positive_id(value)
    if number is None:
        raise InvalidInput(f"{field} must be a positive whole number", code="invalid_field",
                           field=field)
    return number


def amount_string(value: object, field: str = "amount") -> Decimal:
    """Amounts cross the sandbox's API as decimal strings ("100.00"), never JSON numbers."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a decimal string such as \"100.00\"",
                           code="invalid_amount", field=field)
    return parse_amount(value, field=field)


def _method(value: object) -> str:
    code = ALIASES.get(value, value) if isinstance(value, str) else None
    if code not in CATALOG:
        raise InvalidInput(f"method must be one of {', '.join(sorted(CATALOG))}",
                           code="unsupported_method", field="method")
    return str(code)


def payment_view(row: SandboxPayment, public_base_url: str) -> dict[str, Any]:
    pay_url = public_base_url + PAY_PATH + row.ticket
    return {"reference": row.ticket, "status": row.status, "pay_url": pay_url,
            "qr_payload": pay_url if CATALOG[row.method].supports_qr else None,
            "merchant_payment_id": row.merchant_payment_id, "amount": row.amount,
            "currency": row.currency, "method": row.method,
            "transaction_id": row.transaction_id, "refunded_amount": row.refunded_amount}


def create_payment(res: Resources, body: dict[str, Any]) -> CreateResult:
    """A new ticket, or the existing one for the same merchant_payment_id (so a redelivered
    initiate never makes a second payment). The same id with other terms is a 409."""
    merchant_payment_id = positive_id(body.get("merchant_payment_id"), "merchant_payment_id")
    amount = amount_string(body.get("amount"))
    currency = parse_currency(body.get("currency"))
    method = _method(body.get("method"))
    options = apply_test_options(TestOptions(), body.get("test_options"),
                                 allow_callback_url=res.settings.is_dev)
    with res.uow() as uow:
        session = uow.session
        new_id = session.execute(
            pg_insert(SandboxPayment)
            .values(ticket=events.new_id("tkt"), merchant_payment_id=merchant_payment_id,
                    amount=amount, currency=currency, method=method, status="pending",
                    test_options=options.to_json())
            .on_conflict_do_nothing(index_elements=["merchant_payment_id"])
            .returning(SandboxPayment.id)).scalar_one_or_none()
        row = session.scalars(select(SandboxPayment).where(
            SandboxPayment.merchant_payment_id == merchant_payment_id)).one()
        if new_id is None and (row.amount, row.currency, row.method) != (amount, currency,
                                                                        method):
            raise Conflict("merchant_payment_id already names a payment with other terms",
                           code="merchant_payment_id_reused", reference=row.ticket)
        view = payment_view(row, res.settings.public_base_url)
        uow.commit()
    return CreateResult(view, created=new_id is not None)


def find_ticket(session: Session, ticket: str, *, lock: bool = True) -> SandboxPayment:
    """The ticket's row (locked for update unless lock=False), or 404."""
    row = None
    if len(ticket) <= MAX_TICKET_LENGTH:
        query = select(SandboxPayment).where(SandboxPayment.ticket == ticket)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound("No such sandbox payment", code="unknown_reference")
    return row


def get_payment(res: Resources, ticket: str) -> dict[str, Any]:
    with res.uow() as uow:
        row = find_ticket(uow.session, ticket, lock=False)
        return payment_view(row, res.settings.public_base_url)


def close_payment(res: Resources, ticket: str) -> dict[str, Any]:
    """pending/failed -> closed; closed stays closed; a paid ticket cannot be closed."""
    with res.uow() as uow:
        row = find_ticket(uow.session, ticket)
        if row.status == "succeeded":
            raise Conflict("The payment is already paid and cannot be closed",
                           code="already_paid", current_status=row.status,
                           transaction_id=row.transaction_id)
        if row.status != "closed":
            row.status, row.updated_at = "closed", utc_now(uow.session)
        view = payment_view(row, res.settings.public_base_url)
        uow.commit()
    return view


def decide(res: Resources, ticket: str, *, approve: bool) -> dict[str, Any]:
    """The pay page's buttons. Approve: succeeded with a new transaction id and a
    payment.succeeded callback; Decline: failed and payment.failed. Only a pending
    ticket can be decided (or, with out_of_order, a declined one approved once)."""
    with res.uow() as uow:
        session = uow.session
        row = find_ticket(session, ticket)
        options = TestOptions.from_json(row.test_options)
        allowed = _can_approve(row, options) if approve else _can_decline(row)
        if not allowed:
            raise Conflict(f"This payment is already {row.status}", code="ticket_not_pending",
                           current_status=row.status)
        now = utc_now(session)
        if approve:
            row.status, row.transaction_id = "succeeded", events.new_id("txn")
            event_type = events.PAYMENT_SUCCEEDED
        else:
            row.status, event_type = "failed", events.PAYMENT_FAILED
        row.decided_at = row.updated_at = now
        event_id = events.new_id("evt")
        body = events.event_body(event_id, event_type,
                                 merchant_payment_id=row.merchant_payment_id,
                                 amount=row.amount, currency=row.currency,
                                 transaction_id=row.transaction_id, occurred_at=now)
        due = delivery.queue_callback(session, row, options, settings=res.settings,
                                      event_id=event_id, event_type=event_type, body=body)
        delivery.enqueue_after_commit(res, uow, due)
        view = payment_view(row, res.settings.public_base_url)
        uow.commit()
    return view


def set_test_options(res: Resources, ticket: str, changes: object) -> dict[str, Any]:
    """Change the ticket's knobs for callbacks created from now on; switching
    out_of_order off releases a callback it was holding."""
    with res.uow() as uow:
        session = uow.session
        row = find_ticket(session, ticket)
        current = TestOptions.from_json(row.test_options)
        updated = apply_test_options(current, changes,
                                     allow_callback_url=res.settings.is_dev)
        row.test_options = updated.to_json()
        row.updated_at = utc_now(session)
        if current.out_of_order and not updated.out_of_order:
            delivery.enqueue_after_commit(res, uow, delivery.release_held(session, row.id))
        uow.commit()
    return updated.to_json()


def get_deliveries(res: Resources, ticket: str) -> list[dict[str, Any]]:
    with res.uow() as uow:
        return delivery.delivery_views(uow.session,
                                        find_ticket(uow.session, ticket, lock=False).id)


def pay_page_view(res: Resources, ticket: str) -> dict[str, Any]:
    """What the pay page shows: the payment, its method's name, what can still be done."""
    with res.uow() as uow:
        row = find_ticket(uow.session, ticket, lock=False)
        options = TestOptions.from_json(row.test_options)
        view = payment_view(row, res.settings.public_base_url)
        view["method_name"] = CATALOG[row.method].name
        view["can_approve"] = _can_approve(row, options)
        view["can_decline"] = _can_decline(row)
        return view


def _can_approve(row: SandboxPayment, options: TestOptions) -> bool:
    # out_of_order: a declined ticket may be approved once more (the customer's second
    # try on the same page), so that a failed-then-succeeded pair exists to reverse.
    return row.status == "pending" or (row.status == "failed" and options.out_of_order)


def _can_decline(row: SandboxPayment) -> bool:
    return row.status == "pending"

