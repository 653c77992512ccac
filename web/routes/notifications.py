"""The customer's in-app notifications (DESIGN.md §9): a user key sees its own."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from domain.errors import InvalidInput
from services import notifications
from web.auth import current_principal, require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import query_int

bp = Blueprint("notifications", __name__)


@bp.get("/notifications")
@require_key()
def list_notifications():
    unread = request.args.get("unread", "")
    if unread not in ("", "true", "false"):
        raise InvalidInput("unread must be true or false", code="invalid_field", field="unread")
    return jsonify(notifications.list_notifications(
        resources(), current_principal(), user_id=query_int("user_id"),
        unread_only=unread == "true", limit=query_int("limit", default=50, maximum=100) or 50,
        before=query_int("before")))


@bp.post("/notifications/<int:notification_id>/read")
@require_key()
def mark_read(notification_id: int):
    json_body(())  # takes no fields
    return jsonify(notifications.mark_read(resources(), current_principal(), notification_id))
