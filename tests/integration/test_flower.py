"""Flower next to a real worker: it lists the worker, and after a callback arrives it shows
the `callbacks.apply_batch` task that applied it, by name, and its success."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from devstack.scratch_servers import listening_process
from tests.support.callbacks import event_body, inbox_statuses, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until

CELERY = str(Path(sys.executable).parent / "celery")
AUTH = ("ops", "flower-test")


@pytest.fixture
def flower(stack_env, celery_worker, tmp_path):
    def command(port: int) -> list[str]:
        return [CELERY, "-A", "workers.app", "flower", f"--port={port}", "--address=127.0.0.1",
                f"--basic-auth={':'.join(AUTH)}"]

    with listening_process(command, stack_env, tmp_path / "flower.log") as port:
        yield f"http://127.0.0.1:{port}"


def _get(url: str, **params: str) -> dict:
    try:
        response = requests.get(url, params=params, auth=AUTH, timeout=10)
    except requests.RequestException:
        return {}
    return response.json() if response.status_code == 200 else {}


def test_flower_lists_the_worker_and_shows_the_batch_that_applied_a_callback(
        flower, api, clean_db, live_url):
    assert requests.get(flower + "/api/workers", timeout=10).status_code == 401
    workers = wait_until(lambda: _get(flower + "/api/workers", refresh="1"), timeout=30,
                         interval=1, message="Flower lists the worker")
    assert any(name.startswith("test-") for name in workers)
    seen_before = set(_get(flower + "/api/tasks", taskname="callbacks.apply_batch"))

    payment_id = make_payment(clean_db, make_order(clean_db), status="processing")
    assert post_callback(live_url, event_body(payment_id)).status_code == 200
    wait_until(lambda: inbox_statuses(clean_db) == {"processed": 1}, timeout=30,
               message="the callback applied")

    def the_task() -> dict | None:
        tasks = _get(flower + "/api/tasks", taskname="callbacks.apply_batch")
        return next((task for uuid, task in tasks.items() if uuid not in seen_before), None)

    task = wait_until(the_task, timeout=30, interval=0.5,
                      message="Flower shows the callbacks.apply_batch task")
    assert task["name"] == "callbacks.apply_batch"
    wait_until(lambda: (_get(flower + f"/api/task/info/{task['uuid']}")
                        .get("state") == "SUCCESS"),
               timeout=30, interval=0.5, message="the task succeeded, as Flower saw it")
