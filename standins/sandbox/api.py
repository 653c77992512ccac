"""The sandbox's merchant API: JSON, `Authorization: Bearer <SANDBOX_WEBHOOK_SECRET>`.

    POST /sandbox/api/payments                       create (201) or find again (200)
    GET  /sandbox/api/payments/<ticket>              status, transaction_id, amount ...
    POST /sandbox/api/payments/<ticket>/close        closed (409 already_paid)
    POST /sandbox/api/payments/<ticket>/test-options change the test knobs
    GET  /sandbox/api/payments/<ticket>/deliveries   its callbacks and their attempts
    POST /sandbox/api/refunds                        accepted (202; 200 when repeated)
    GET  /sandbox/api/statements/<YYYY-MM-DD>        the day's statement (statements.py)

Errors use our shape ({"detail", "code", ...}) through web/errors.py.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, jsonify, request

from domain.errors import Unauthenticated
from standins.sandbox import refunds, statements, tickets
from web.deps import resources
from web.json_body import json_body

F = TypeVar("F", bound=Callable[..., Any])

api_bp = Blueprint("sandbox_api", __name__)


def merchant_key_required(view: F) -> F:
    """The merchant authenticates with the sandbox's shared secret, compared in
    constant time so a wrong key does not reveal how much of it was right."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        expected = resources().settings.sandbox_api_key
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                                 expected.encode()):
            raise Unauthenticated("Send the merchant key: Authorization: Bearer <key>",
                                  code="invalid_merchant_key")
        return view(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


@api_bp.post("/payments")
@merchant_key_required
def create_payment():
    result = tickets.create_payment(resources(), json_body(allow_empty=False))
    return jsonify(result.view), 201 if result.created else 200


@api_bp.get("/payments/<ticket>")
@merchant_key_required
def get_payment(ticket: str):
    return jsonify(tickets.get_payment(resources(), ticket))


@api_bp.post("/payments/<ticket>/close")
@merchant_key_required
def close_payment(ticket: str):
    return jsonify(tickets.close_payment(resources(), ticket))


@api_bp.post("/payments/<ticket>/test-options")
@merchant_key_required
def set_test_options(ticket: str):
    return jsonify(tickets.set_test_options(resources(), ticket, json_body()))


@api_bp.get("/payments/<ticket>/deliveries")
@merchant_key_required
def list_deliveries(ticket: str):
    return jsonify({"items": tickets.get_deliveries(resources(), ticket)})


@api_bp.post("/refunds")
@merchant_key_required
def request_refund():
    result = refunds.request_refund(resources(), json_body(allow_empty=False))
    return jsonify(result.view), 202 if result.created else 200


@api_bp.get("/statements/<day>")
@merchant_key_required
def get_statement(day: str):
    try:
        return jsonify(statements.statement(resources(), day))
    except statements.SandboxUnavailable:
        return jsonify({"detail": "The statement is not available now; retry later",
                        "code": "statement_unavailable"}), 503
