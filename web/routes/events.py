"""The events feed (admin, DESIGN.md §9): catch up on what happened, redeliver one."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services.webhooks import feed
from web.auth import require_key
from web.deps import resources
from web.json_body import json_body
from web.routes.params import query_int, query_str

bp = Blueprint("events", __name__)


@bp.get("/events")
@require_key(admin=True)
def list_events():
    return jsonify(feed.list_events(
        resources(), event_type=query_str("type", max_len=32),
        after=query_str("after", max_len=32),
        limit=query_int("limit", default=feed.DEFAULT_LIMIT, maximum=feed.MAX_LIMIT)
        or feed.DEFAULT_LIMIT))


@bp.get("/events/<event_id>")
@require_key(admin=True)
def get_event(event_id: str):
    return jsonify(feed.get_event(resources(), event_id))


@bp.post("/events/<event_id>/redeliver")
@require_key(admin=True)
def redeliver_event(event_id: str):
    json_body(())  # takes no fields
    return jsonify(feed.redeliver_event(resources(), event_id)), 202
