"""The daily reconciliation's results (admin, issue #17): runs and their items."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, jsonify, request

from domain.errors import InvalidInput
from services.reconciliation import views
from web.auth import require_key
from web.deps import resources
from web.routes.params import query_page, query_str

bp = Blueprint("reconciliation", __name__)

MAX_PAGE_SIZE = 100


@bp.get("/reconciliation/runs")
@require_key(admin=True)
def list_runs():
    page, page_size = query_page(default_size=20, max_size=MAX_PAGE_SIZE)
    return jsonify(views.list_runs(
        resources(), provider=query_str("provider", max_len=32),
        status=query_str("status", max_len=16), day=_query_date("date"), page=page,
        page_size=page_size))


@bp.get("/reconciliation/runs/<int:run_id>/items")
@require_key(admin=True)
def list_items(run_id: int):
    page, page_size = query_page(default_size=50, max_size=MAX_PAGE_SIZE)
    return jsonify(views.list_items(resources(), run_id,
                                    status=query_str("status", max_len=16), page=page,
                                    page_size=page_size))


def _query_date(name: str) -> date | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        if len(raw) == 10:
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise InvalidInput(f"{name} must be a date YYYY-MM-DD", code="invalid_field", field=name)
