"""Refunds of a payment (DESIGN.md §5): request one (admin), list them (owner or admin)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services import refunds
from web.auth import current_principal, require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import REASON_MAX, body_str

bp = Blueprint("refunds", __name__)



@bp.post("/payments/<int:payment_id>/refunds")
@require_key(admin=True)
def request_refund(payment_id: int):
    body = json_body(("amount", "reason"))
    view = refunds.request_refund(resources(), current_principal(), payment_id,
                                  amount=body.get("amount"),
                                  reason=body_str(body, "reason", max_len=REASON_MAX))
    return jsonify(view), 202


@bp.get("/payments/<int:payment_id>/refunds")
@require_key()
def list_refunds(payment_id: int):
    return jsonify(refunds.list_refunds(resources(), current_principal(), payment_id))
