"""B1 callback ingest: `POST /callbacks/sandbox` requests/s ÷ hello-world POST requests/s."""

from __future__ import annotations

from functools import partial

from adapters.resources import Resources
from bench import http_ratio
from bench.callbacks import CALLBACK_PATH, signed_headers, success_body
from bench.fixtures import create_processing_payments, empty_tables
from bench.progress import Progress
from bench.report import Machine, ScenarioResult, Target
from bench.wrk import CONNECTIONS, Request
from config import Settings

FULL_SIZE = 20   # seconds of load per side and run
QUICK_SIZE = 8
CALLBACK_QUEUE = "callbacks"  # the Redis list Celery keeps that queue's messages in

ABOUT = f"""\
Subject: `POST /callbacks/sandbox` as a provider sends it: each request a distinct, freshly
signed `payment.succeeded` event for its own `processing` payment, so every one is verified
(HMAC over the raw body), stored in the inbox (committed) and enqueued as `callbacks.process`
on the Redis broker before the 200. No worker runs meanwhile: B2 measures applying. Baseline:
`bench/hello.py`, a Flask app whose one view reads the body and answers a small JSON object,
sent the same bytes. Both under the same gunicorn config (`web/gunicorn_conf.py`: 2 workers ×
4 threads, JSON access log) and the same wrk settings (1 thread, {CONNECTIONS} keep-alive
connections), on the same 2 cores as PostgreSQL and Redis, alternating within each run."""


def _prepare(settings: Settings, res: Resources, count: int) -> list[Request]:
    requests = []
    for payment_id in create_processing_payments(res, count):
        body = success_body(payment_id)
        requests.append(Request("POST", CALLBACK_PATH, body.decode(),
                                signed_headers(settings, body)))
    return requests


def _reset(res: Resources) -> None:
    empty_tables(res)
    res.redis.delete(CALLBACK_QUEUE)  # queued callbacks.process messages: no worker runs


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine) -> ScenarioResult:
    spec = http_ratio.HttpScenario(
        scenario="B1", title="callback ingest: `POST /callbacks/sandbox` ÷ hello-world POST",
        target=Target(0.5, at_most=False), about=ABOUT,
        prepare=partial(_prepare, settings), stored_in="provider_callbacks", reset=_reset)
    return http_ratio.run(spec, settings, progress, size=size, runs=runs, mode=mode,
                          machine=machine)
