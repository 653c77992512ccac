"""Flower next to a real worker: it lists the worker, and after a callback arrives it shows
the `callbacks.process` task by name with its argument (the inbox row's id)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from devstack.scratch_servers import listening_process
from domain.models import ProviderCallback
from tests.support.callbacks import event_body, post_callback
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


def test_flower_lists_the_worker_and_shows_callbacks_process_with_its_args(
        flower, api, clean_db, live_url):
    assert requests.get(flower + "/api/workers", timeout=10).status_code == 401
    workers = wait_until(lambda: _get(flower + "/api/workers", refresh="1"), timeout=30,
                         interval=1, message="Flower lists the worker")
    assert any(name.startswith("test-") for name in workers)

    payment_id = make_payment(clean_db, make_order(clean_db), status="processing")
    assert post_callback(live_url, event_body(payment_id)).status_code == 200
    with clean_db.uow() as uow:
        callback_id = uow.session.execute(select(ProviderCallback.id)).scalar_one()

    def the_task() -> dict | None:
        tasks = _get(flower + "/api/tasks", taskname="callbacks.process")
        return next((task for task in tasks.values()
                     if json.loads(task.get("args") or "null") == [callback_id]), None)

    task = wait_until(the_task, timeout=30, interval=0.5,
                      message="Flower shows the callbacks.process task")
    assert task["name"] == "callbacks.process"
    wait_until(lambda: (_get(flower + f"/api/task/info/{task['uuid']}")
                        .get("state") == "SUCCESS"),
               timeout=30, interval=0.5, message="the task succeeded, as Flower saw it")
