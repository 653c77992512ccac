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
Where the time goes (measured 2026-12-01 on the machine below, shared with other engineers'
test runs: load average 7-14 on 2 cores, so absolute figures swing by a factor of two from one
run to the next and every round trip waits for a core). CPU per request, both apps driven in
one process through Flask's test client, medians of eight alternating measurements of 1,500
requests each: ours 0.98 ms, the floor 0.74 ms, ours 1.6 times the floor; the code before the
first change below, measured the same way in the same hour: ours 1.31 ms, the floor 0.58 ms,
2.2 times. Ours makes fewer round trips than the floor (the INSERT and the wake-up's `SET NX`;
the floor: BEGIN, INSERT, COMMIT, LPUSH), so the gap is Python: by cProfile on the CPU clock,
of our request SQLAlchemy's execution of the prebuilt insert (with psycopg under it) is a
third, Flask's dispatch and our request hooks (request id, security headers, metrics) nearly
a third, the wake-up's Redis call a seventh, the signature check, parsing and the storable
check a seventh. Changed on the way: the refusal limit (issue #19) is counted only once a
signature has been refused, so a genuine callback makes no Redis command for it and runs none
of its bookkeeping (Flask-Limiter's check before every callback, its Redis read and its own
work, was a fifth of our request's CPU by the same profile); an address over the limit now
costs one HMAC check per request before its 429. Earlier: the wake-up replaces one
`callbacks.process` message per callback (Celery's message building and publish were most of
the old gap); the insert runs in autocommit (committed when it returns, without BEGIN and
COMMIT round trips) on a pool that does not ping on checkout (a connection found dead is
retried once: the insert is idempotent); no X-RateLimit headers. What bounds the rest:
SQLAlchemy around the one INSERT, and Flask's per-request machinery and our hooks, which the
floor does without; running the insert as a prepared statement on the raw psycopg connection
would take most of SQLAlchemy's share. Under wrk the ratio varied widely with the machine's
load: 0.33-0.87 a run in this hour, before the change as after it (three quick runs of three
each, alternating, before this row's: medians of the nine, 0.53 before and 0.70 after), so the
quick row says little more than the direction; the CPU figures above are the steadier
measure. The full rows were measured on a quiet machine (load about 1, 2026-12-01 15:35 UTC):
ours 1,246-1,405 req/s against the floor's 1,259-1,897, ratios 0.74, 0.75 and 1.07."""


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
