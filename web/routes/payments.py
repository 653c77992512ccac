"""Payments: create, list, read, status, pay, cancel, retry (DESIGN.md §5)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.orm import Session

from services import payments, queries, review
from services.checkout import with_checkout_url
from web.auth import current_principal, request_uow, require_key
from web.deps import resources
from web.idempotency import InTransaction, claims_in_transaction, keyed_request
from web.json_body import json_body
from web.routes.params import (
    REASON_MAX,
    body_id,
    body_str,
    query_bool,
    query_datetime,
    query_int,
    query_page,
    query_str,
)

bp = Blueprint("payments", __name__)

MAX_PAGE_SIZE = 100
# Keeps OFFSET inside BIGINT whatever the page size; nobody pages this far.


@bp.post("/payments")
@require_key(keeps_connection=True)
@claims_in_transaction
def create_payment():
    body = json_body(("order_id", "method", "amount"))
    keyed = keyed_request()
    answer = _KeyedAnswer(keyed) if keyed is not None else None
    view, created = payments.create_payment(
        resources(), current_principal(), order_id=body_id(body, "order_id") or 0,
        method=body.get("method"), amount=body.get("amount"), keyed=answer,
        uow=request_uow())
    if answer is None:
        return _created_response(view, created)
    answer.keyed.committed()
    assert answer.response is not None
    return answer.response  # the very bytes stored for replays


def _created_response(view: payments.PaymentView, created: bool) -> Response:
    response = jsonify(_linked(view))
    response.status_code = 201 if created else 200
    return response


class _KeyedAnswer:
    """The Idempotency-Key claimed, and the answer stored, in create_payment's
    transaction (services.payments.KeyedAnswer)."""

    def __init__(self, keyed: InTransaction) -> None:
        self.keyed = keyed
        self.response: Response | None = None

    def claim(self, session: Session) -> None:
        self.keyed.claim(session)

    def store(self, session: Session, view: payments.PaymentView, created: bool) -> None:
        self.response = _created_response(view, created)
        self.keyed.store(session, self.response.status_code,
                         self.response.get_data(as_text=True))


@bp.get("/payments")
@require_key()
def list_payments():
    filters = queries.PaymentFilters(
        order_id=query_int("order_id"), status=query_str("status"),
        method=query_str("method"), user_id=query_int("user_id"),
        created_from=query_datetime("created_from"), created_to=query_datetime("created_to"),
        needs_review=query_bool("needs_review"))
    page, page_size = query_page(default_size=20, max_size=MAX_PAGE_SIZE)
    listing = queries.list_payments(resources(), current_principal(), filters, page=page,
                                    page_size=page_size)
    return jsonify({**listing, "items": [_linked(item) for item in listing["items"]]})


@bp.get("/payments/<int:payment_id>")
@require_key()
def get_payment(payment_id: int):
    return jsonify(_linked(queries.get_payment(resources(), current_principal(), payment_id)))


@bp.get("/payments/<int:payment_id>/status")
@require_key()
def get_payment_status(payment_id: int):
    return jsonify(queries.get_payment_status(resources(), current_principal(), payment_id))


@bp.post("/payments/<int:payment_id>/pay")
@require_key()
def pay(payment_id: int):
    json_body(())  # no fields, but a body that is not a JSON object is still refused
    view = payments.request_payment_start(resources(), current_principal(), payment_id)
    # A balance payment is settled within the request (DESIGN.md §10): 200, not accepted.
    return jsonify(_linked(view)), 200 if view["status"] == "succeeded" else 202


@bp.post("/payments/<int:payment_id>/cancel")
@require_key()
def cancel(payment_id: int):
    body = json_body(("reason",))
    return jsonify(_linked(payments.cancel_payment(
        resources(), current_principal(), payment_id,
        reason=body_str(body, "reason", max_len=REASON_MAX))))


@bp.post("/payments/<int:payment_id>/retry")
@require_key()
def retry(payment_id: int):
    json_body(())
    view, created = payments.retry_payment(resources(), current_principal(), payment_id)
    return jsonify(_linked(view)), 201 if created else 200


@bp.post("/payments/<int:payment_id>/review")
@require_key(admin=True)
def resolve_review(payment_id: int):
    body = json_body(("action", "note"))
    outcome = review.resolve_review(resources(), current_principal(), payment_id,
                                    action=body.get("action"),
                                    note=body_str(body, "note", max_len=review.NOTE_MAX))
    outcome["payment"] = _linked(outcome["payment"])
    # A refund is queued for the worker, as POST .../refunds answers it: accepted.
    return jsonify(outcome), 202 if outcome["refund"] else 200


def _linked(view: dict) -> dict:
    """The payment with its customer's checkout link (the cashier page)."""
    return with_checkout_url(resources().settings, view)
