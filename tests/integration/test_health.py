"""Health, readiness and the JSON error contract for things no route handles."""

from __future__ import annotations


def test_healthz_answers(api):
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_unknown_route_is_json_404(api):
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"
    assert response.json()["detail"]


def test_wrong_method_is_json_405(api):
    response = api.post("/healthz")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
