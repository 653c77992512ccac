"""A real gunicorn started the way every caller starts it (web/gunicorn_conf.py) writes
JSON lines: one access line per request on stdout, its own error log on stderr, and
neither carries the API key or the cashier link's token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.scratch_servers import gunicorn as gunicorn_server
from tests.support.live_server import Api
from tests.support.processes import wait_until

WORKERS = 3  # not the default 2: shows WEB_WORKERS is read


@pytest.fixture
def gunicorn(stack_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The base URL, and the files gunicorn's stdout and stderr go to."""
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = {**stack_env, "WEB_WORKERS": str(WORKERS), "WEB_THREADS": "2"}
    with gunicorn_server(env, stdout, stderr) as url:
        yield url, stdout, stderr


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]


def test_access_and_error_lines_are_json_without_secrets(gunicorn, admin_key):
    url, stdout, stderr = gunicorn
    secret_token = "token-that-must-not-be-logged"

    health = Api(url).get("/healthz", headers={"X-Request-ID": "test-req-123"})
    assert health.status_code == 200
    missing = Api(url).as_key(admin_key).get("/api/v1/orders/987654321")
    assert missing.status_code == 404, missing.text
    cashier = Api(url).get(f"/checkout/987654321?token={secret_token}")
    assert cashier.status_code == 404

    # A line is written after its response is sent: wait for all three.
    wait_until(lambda: len(_lines(stdout)) >= 3, timeout=15, message="three access lines")
    access = [json.loads(line) for line in _lines(stdout)]  # every line parses
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/orders/987654321", 404),
        ("GET", "/checkout/987654321", 404),  # the query string is left out
    ]
    assert [a["request_id"] for a in access] == [
        "test-req-123", missing.headers["X-Request-ID"], cashier.headers["X-Request-ID"]]
    for line in access:
        assert line["logger"] == "gunicorn.access" and line["level"] == "INFO"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert isinstance(line["bytes"], int) and line["bytes"] > 0
        assert line["remote_addr"] == "127.0.0.1"
        assert line["user_agent"].startswith("python-requests/")

    # gunicorn's own log: JSON through the same formatter, one boot line per worker.
    def booting() -> list[dict]:
        errors = [json.loads(line) for line in _lines(stderr) if line.startswith("{")]
        return [e for e in errors if e["message"].startswith("Booting worker")]

    wait_until(lambda: len(booting()) == WORKERS, timeout=15, message="a boot line per worker")
    assert all(e["logger"] == "gunicorn.error" and "ts" in e for e in booting())

    everything = stdout.read_text() + stderr.read_text()
    assert admin_key not in everything
    assert secret_token not in everything
