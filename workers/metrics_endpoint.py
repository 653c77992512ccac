"""What a worker exports when it is ready, and where it serves it.

At start the worker's main process exports the series that would otherwise appear only
at their first increment (callback and provider call outcomes of the providers built,
task failures: see adapters.metrics.initialise_series) and how often beat sends each
sweep, so the "no expiry sweep completed within 3 intervals" alert compares against the
real setting.

With WORKER_METRICS_ADDRESS (host:port) set it also serves GET /metrics there: every
pool process's samples, read from the worker's own PROMETHEUS_MULTIPROC_DIR. That is for
deployments where web and worker do not share that directory (one container each, as in
docker-compose.yml). Under `make up` they share it and the web's /metrics already shows
the worker's figures, so the address stays unset there: serving both would count twice.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_ready
from prometheus_client import start_http_server

from adapters.metrics import SWEEP_INTERVAL, exposition, initialise_series
from adapters.providers.registry import build_registry
from beat_schedule import build_beat_schedule
from config import Settings
from services.maintenance import SWEEP_JOBS

log = logging.getLogger(__name__)

TASK_PREFIX = "maintenance."


def sweep_intervals(settings: Settings) -> dict[str, float]:
    """{sweep job: seconds between beat's sends} for the jobs that report completion."""
    intervals = {}
    for entry in build_beat_schedule(settings).values():
        job = entry["task"].removeprefix(TASK_PREFIX)
        if job in SWEEP_JOBS:
            intervals[job] = float(entry["schedule"])
    return intervals


@worker_ready.connect
def _export_at_start(sender: Any = None, **_: Any) -> None:
    from workers.app import celery, settings  # noqa: PLC0415 - this module is imported by it

    providers = build_registry(settings, settings.payment_providers).names
    initialise_series(providers,
                      [name for name in celery.tasks if not name.startswith("celery.")])
    for job, seconds in sweep_intervals(settings).items():
        SWEEP_INTERVAL.labels(job).set(seconds)
    if settings.worker_metrics_address is None:
        return
    host, port = settings.worker_metrics_address
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # The pool's processes do the work; without the shared directory this process
        # would serve only its own, nearly empty, registry.
        log.warning("WORKER_METRICS_ADDRESS is set without PROMETHEUS_MULTIPROC_DIR: "
                    "/metrics shows only the main process, not the pool's tasks")
    start_http_server(port, addr=host, registry=exposition())
    log.info("worker metrics at http://%s:%s/metrics", host, port)
