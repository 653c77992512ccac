"""GET /metrics: Prometheus exposition of web and worker figures, plus the gauges
read at scrape time (inbox backlog, queue depth).

Open in dev and test. Anywhere else it answers only `Authorization: Bearer
<METRICS_BEARER_TOKEN>` (Prometheus' `authorization` scrape setting), and with no token
configured it answers nobody: the figures say how much money moves, and each scrape
costs a database query.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from adapters.metrics import render_latest
from domain.errors import Unauthenticated
from web.deps import resources
from web.scrape_gauges import scrape_gauges

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    _check_scraper()
    body, content_type = render_latest(extra=[scrape_gauges(current_app, resources())])
    return Response(body, content_type=content_type)


def _check_scraper() -> None:
    settings = resources().settings
    if settings.is_dev:
        return
    token = settings.metrics_bearer_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token is None:
        raise Unauthenticated("GET /metrics is off: set METRICS_BEARER_TOKEN and scrape with "
                              "it as a bearer token", code="metrics_disabled")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise Unauthenticated("Send Authorization: Bearer <METRICS_BEARER_TOKEN>",
                              code="invalid_metrics_token")
