"""Fixtures and helpers for webhook tests: a receiver, a webhooks-queue worker with a
fast retry schedule, endpoints registered through the API."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.resources import Resources
from domain.webhook_models import WebhookDelivery
from tests.support.processes import stop_process_group
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver
from tests.support.worker import start_worker

# Seconds after each failed attempt: quick enough for a test to watch retries happen.
FAST_SCHEDULE = "1,1,1,1,1,1,1,1"


def webhooks_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, "WEBHOOK_RETRY_SCHEDULE_SECONDS": FAST_SCHEDULE}


def start_webhooks_worker(stack_env: dict[str, str], log_path: Path, concurrency: int = 2):
    """A worker for the webhooks queue only, as `make up` runs one beside the main one."""
    return start_worker(webhooks_env(stack_env), log_path, concurrency=concurrency,
                        queues="webhooks")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


@pytest.fixture(scope="module")
def webhooks_worker(stack_env: dict[str, str], tmp_run_dir: Path):
    proc = start_webhooks_worker(stack_env, tmp_run_dir / "webhooks-worker.log")
    yield proc
    stop_process_group(proc, signal.SIGTERM)


def register(admin, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = admin.post("/api/v1/webhook-endpoints", json={"url": url,
                                                             "events": events or ["*"]})
    assert response.status_code == 201, response.text
    return response.json()


def delivery_statuses(res: Resources) -> dict[str, int]:
    with res.uow() as uow:
        rows = uow.session.execute(select(WebhookDelivery.status, func.count())
                                   .group_by(WebhookDelivery.status)).all()
    return {status: count for status, count in rows}
