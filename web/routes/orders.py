"""Orders: create, read, and admin status transitions (DESIGN.md §5)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services import orders, queries
from web.auth import current_principal, require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import REASON_MAX, body_id, body_str

bp = Blueprint("orders", __name__)



@bp.post("/orders")
@require_key()
def create_order():
    body = json_body(("total_amount", "currency", "order_number", "user_id", "purpose"))
    view = orders.create_order(
        resources(), current_principal(),
        total_amount=body.get("total_amount"), currency=body.get("currency"),
        order_number=body_str(body, "order_number", max_len=64),
        user_id=body_id(body, "user_id", required=False), purpose=body.get("purpose"))
    return jsonify(view), 201


@bp.get("/orders/<int:order_id>")
@require_key()
def get_order(order_id: int):
    return jsonify(queries.get_order(resources(), current_principal(), order_id))


@bp.post("/orders/<int:order_id>/transitions")
@require_key(admin=True)
def transition_order(order_id: int):
    body = json_body(("to", "reason"))
    view = orders.change_order_status(
        resources(), current_principal(), order_id,
        to=body_str(body, "to", max_len=32, required=True) or "",
        reason=body_str(body, "reason", max_len=REASON_MAX))
    return jsonify(view)
