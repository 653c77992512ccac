"""GET /metrics: Prometheus exposition of web and worker figures, plus the gauges
read at scrape time (inbox backlog, queue depth)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from adapters.metrics import render_latest
from web.deps import resources
from web.scrape_gauges import scrape_gauges

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render_latest(extra=[scrape_gauges(current_app, resources())])
    return Response(body, content_type=content_type)
