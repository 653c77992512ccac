"""GET /metrics: Prometheus exposition of web and worker figures."""

from __future__ import annotations

from flask import Blueprint, Response

from adapters.metrics import render_latest

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, content_type=content_type)
