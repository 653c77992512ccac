"""Webhook endpoints (admin, DESIGN.md §9): create (the secret shown once), list, read,
update, delete, rotate the secret; and each endpoint's deliveries."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services.webhooks import delivery_log, endpoints
from web.auth import require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import query_int, query_str

bp = Blueprint("webhooks", __name__)

BASE = "/webhook-endpoints"


@bp.post(BASE)
@require_key(admin=True)
def create_endpoint():
    body = json_body(endpoints.CREATE_FIELDS, allow_empty=False)
    return jsonify(endpoints.create_endpoint(resources(), body)), 201


@bp.get(BASE)
@require_key(admin=True)
def list_endpoints():
    return jsonify(endpoints.list_endpoints(resources()))


@bp.get(f"{BASE}/<int:endpoint_id>")
@require_key(admin=True)
def get_endpoint(endpoint_id: int):
    return jsonify(endpoints.get_endpoint(resources(), endpoint_id))


@bp.patch(f"{BASE}/<int:endpoint_id>")
@require_key(admin=True)
def update_endpoint(endpoint_id: int):
    body = json_body(endpoints.UPDATE_FIELDS, allow_empty=False)
    return jsonify(endpoints.update_endpoint(resources(), endpoint_id, body))


@bp.delete(f"{BASE}/<int:endpoint_id>")
@require_key(admin=True)
def delete_endpoint(endpoint_id: int):
    endpoints.delete_endpoint(resources(), endpoint_id)
    return "", 204


@bp.post(f"{BASE}/<int:endpoint_id>/rotate-secret")
@require_key(admin=True)
def rotate_secret(endpoint_id: int):
    json_body(())  # takes no fields
    return jsonify(endpoints.rotate_secret(resources(), endpoint_id))


@bp.get(f"{BASE}/<int:endpoint_id>/deliveries")
@require_key(admin=True)
def list_deliveries(endpoint_id: int):
    return jsonify(delivery_log.list_deliveries(
        resources(), endpoint_id, status=query_str("status", max_len=16),
        limit=query_int("limit", default=50, maximum=100) or 50,
        before=query_int("before")))
