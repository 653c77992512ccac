"""The checks behind GET /readyz, shared with the `payments_ready` gauge of /metrics so
Prometheus sees exactly what a load balancer's readiness probe sees."""

from __future__ import annotations

from sqlalchemy import text

from adapters.resources import Resources


def readiness_checks(res: Resources) -> dict[str, str]:
    """{"database": "ok" | "unavailable: <error>", "redis": ..., "broker": ...}; "broker"
    only when BROKER_URL names another server than REDIS_URL (RabbitMQ): a web that cannot
    publish still stores callbacks (the sweeps send them later), but is not ready."""
    checks: dict[str, str] = {}
    try:
        with res.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        res.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    if res.settings.broker_url != res.settings.redis_url:
        try:
            res.broker.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
    return checks
