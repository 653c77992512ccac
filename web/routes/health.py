"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify

from web.deps import resources
from web.readiness import readiness_checks

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks = readiness_checks(resources())
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503)
