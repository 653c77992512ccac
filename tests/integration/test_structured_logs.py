"""The request id travels from the HTTP request into the task it enqueues, and the
worker's log lines about that task are JSON carrying it and the payment's id."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def test_request_id_reaches_the_workers_json_log_lines(api, clean_db, make_user_key,
                                                        celery_worker, tmp_run_dir):
    payment_id = make_payment(clean_db, make_order(clean_db, user_id=7), user_id=7)
    request_id = f"req-{uuid.uuid4().hex}"
    response = api.as_key(make_user_key(7)).post(f"/api/v1/payments/{payment_id}/pay",
                                                 headers={"X-Request-ID": request_id})
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id

    def task_lines() -> list[dict]:
        return [line for line in _json_lines(tmp_run_dir / "worker.log")
                if line.get("request_id") == request_id]

    lines = wait_until(task_lines, timeout=30, interval=0.3,
                       message="a worker log line with the request id")
    line = lines[0]
    assert line["payment_id"] == payment_id
    assert line["task"] == "payments.initiate"
    assert {"ts", "level", "logger", "message"} <= set(line)
    # Every line of that task's run carries the payment's id, not just the first.
    assert all(entry.get("payment_id") == payment_id for entry in lines)


def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(api, clean_db):
    generated = api.get("/healthz").headers.get("X-Request-ID")
    assert generated and len(generated) >= 16
    assert api.get("/healthz").headers["X-Request-ID"] != generated
    odd = api.get("/healthz", headers={"X-Request-ID": "two words\u00e9"})
    assert odd.headers["X-Request-ID"] not in ("two words\u00e9", "")
