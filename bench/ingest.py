"""B1 callback ingest: `POST /callbacks/sandbox` requests/s ÷ requests/s of the minimal
ingest floor (bench/floor.py); the hello-world POST's figure is kept as information."""

from __future__ import annotations

from functools import partial

from adapters.resources import Resources
from bench import http_ratio
from bench.callbacks import CALLBACK_PATH, signed_headers, success_body
from bench.fixtures import create_processing_payments, empty_tables
from bench.floor import QUEUE as FLOOR_QUEUE
from bench.progress import Progress
from bench.report import Machine, ScenarioResult, Target
from bench.wrk import CONNECTIONS, Request
from config import Settings
from services.callback_wakeup import WAKE_KEY

FULL_SIZE = 20   # seconds of load per side and run
QUICK_SIZE = 8
CALLBACK_QUEUE = "callbacks"  # the Redis list Celery keeps that queue's messages in

ABOUT = f"""\
Subject: `POST /callbacks/sandbox` as a provider sends it: each request a distinct, freshly
signed `payment.succeeded` event for its own `processing` payment, so every one is verified
(HMAC over the raw body), stored in the inbox (committed) and followed by the wake-up of the
batch appliers (one Redis `SET NX`; a `callbacks.apply_batch` message only when none is on its
way) before the 200. No worker runs meanwhile: B2 measures applying. Baseline: the floor,
`bench/floor.py`, a hand-written minimal ingest on the same stack (Flask under the same
gunicorn; HMAC check, one prepared psycopg `INSERT ... ON CONFLICT DO NOTHING` with a durable
commit, one Redis `LPUSH`), sent the very same requests and storing the same rows. The
hello-world POST (`bench/hello.py`, reads the body, answers a small JSON object) is measured
too, for information (notes). All under the same gunicorn config (`web/gunicorn_conf.py`: 2
workers × 4 threads, JSON access log) and the same wrk settings (1 thread, {CONNECTIONS}
keep-alive connections), on the same 2 cores as PostgreSQL and Redis, alternating within each
run. A run counts only with zero errors and every answered callback stored."""

# Where the time goes; refresh when the ingest path changes.
PROFILE = """\
Where the time goes (measured 2026-12-01 on the machine below, quiet): CPU time of each process
over a wrk run, per request: the hello-world costs 0.39 ms in gunicorn; a callback 2.0 ms in
gunicorn, 0.3 ms in PostgreSQL and under 0.1 ms in Redis, and the 2 cores are busy. So the
ratio is the ratio of Python CPU per request. `ingest_callback` alone, called in a loop, takes
1.6–1.8 ms of CPU; by cProfile, psycopg 31% (mostly waiting for the durable commit), SQLAlchemy
14%, redis-py 13%, kombu 9%, Celery's `send_task` 8%, and our own code (HMAC check, parsing)
about 3%. Fixed on the way: Celery published a task-sent event on every send (one more Redis
publish per callback; Flower does not need it), and the insert is now built once as a Core
statement. What bounds the rest: a 2xx must follow a committed insert and a publish.
A ratio of 0.5 means about 2,100 callbacks/s here, under 1 ms of CPU per request in all; less
the 0.39 ms the hello-world request itself costs, about half a millisecond would be left for
verify, insert, commit and publish, less than what psycopg, SQLAlchemy and Celery's message
building cost in Python here. Publishing with a raw `LPUSH` of a prebuilt message and the
insert through psycopg alone would be the next steps, each giving up a library's guarantees
for ~0.3–0.5 ms."""


def _prepare(settings: Settings, res: Resources, count: int) -> list[Request]:
    requests = []
    for payment_id in create_processing_payments(res, count):
        body = success_body(payment_id)
        requests.append(Request("POST", CALLBACK_PATH, body.decode(),
                                signed_headers(settings, body)))
    return requests


def _reset(res: Resources) -> None:
    empty_tables(res)
    # queued wake-ups (no worker runs), their flag, the floor's pushes
    res.redis.delete(CALLBACK_QUEUE, WAKE_KEY, FLOOR_QUEUE)


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine) -> ScenarioResult:
    spec = http_ratio.HttpScenario(
        scenario="B1", title="callback ingest: `POST /callbacks/sandbox` ÷ the minimal-ingest "
                             "floor",
        target=Target(0.8, at_most=False), about=f"{ABOUT}\n\n{PROFILE}",
        prepare=partial(_prepare, settings), stored_in="provider_callbacks", reset=_reset,
        floor_app="bench.floor:app")
    return http_ratio.run(spec, settings, progress, size=size, runs=runs, mode=mode,
                          machine=machine)
