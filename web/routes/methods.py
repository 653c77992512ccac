"""The payment method catalog (DESIGN.md §4, seed 004)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services import queries
from web.auth import require_key
from web.deps import resources

bp = Blueprint("methods", __name__)


@bp.get("/payment-methods")
@require_key()
def list_methods():
    return jsonify(queries.list_payment_methods(resources().providers.available_methods))
