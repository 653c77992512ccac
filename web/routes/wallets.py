"""Wallets (DESIGN.md §10): a wallet and its ledger (owner, admin), admin credits."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services.wallet import accounts
from web.auth import current_principal, require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import body_str, query_int

bp = Blueprint("wallets", __name__)

REASON_MAX = 500
MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000_000  # keeps OFFSET inside BIGINT, as for payments


@bp.get("/wallets/<int:user_id>")
@require_key()
def get_wallet(user_id: int):
    return jsonify(accounts.get_wallet(resources(), current_principal(), user_id))


@bp.get("/wallets/<int:user_id>/ledger")
@require_key()
def get_ledger(user_id: int):
    page = query_int("page", default=1, maximum=MAX_PAGE) or 1
    page_size = query_int("page_size", default=20, maximum=MAX_PAGE_SIZE) or 20
    return jsonify(accounts.list_ledger(resources(), current_principal(), user_id, page=page,
                                        page_size=page_size))


@bp.post("/wallets/<int:user_id>/credits")
@require_key(admin=True)
def credit(user_id: int):
    body = json_body(("amount", "reason"))
    entry = accounts.credit_wallet(
        resources(), current_principal(), user_id, amount=body.get("amount"),
        reason=body_str(body, "reason", max_len=REASON_MAX, required=True) or "")
    return jsonify(entry), 201
