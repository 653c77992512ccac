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
Where the time goes (measured 2026-12-01 on the machine below while other engineers' test
runs shared it: load average 3-11 on 2 cores, so absolute figures swing by a third from one
hour to the next). CPU per request, each app in its own process driven through Flask's test
client (Prometheus in multiprocess mode, as under gunicorn), batches of 800 requests
alternating between the apps, medians of ten batches: ours 0.84 ms, the floor 0.69 ms, ours
1.22 times the floor (the 10th percentile of each batch, steadier under load: 0.76 ms against
0.60 ms, 1.26 times); the code before this round, measured alongside: 1.14 ms (1.65 times the
floor; 10th percentile 1.02 ms). Ours makes fewer round trips than the floor (the INSERT and
the wake-up's `SET NX`; the floor: BEGIN, INSERT, COMMIT, LPUSH), so the gap is Python. This
round's changes, each measured the same way: the inbox insert runs as a prepared psycopg
statement on a pooled connection's driver connection, autocommit from its connect on
(adapters/db.Database.run_prepared), instead of SQLAlchemy's execution of a Core insert (a
third of our request by cProfile before; CPU per request -20%); a connection found dead makes
the pool replace every connection older than it and the insert runs once more, and a driver
error is raised as SQLAlchemy's DBAPIError, so the 503 is unchanged; it needs a direct
connection or a pooler that keeps prepared statements. The per-request hooks made cheap (the
security headers in one pass over the answer's headers, the request id read from the WSGI
environ, Flask's check of each hook for `async def` made once per function, the callback
counters' and latency's labelled series looked up once, one read of a body with a length):
-4%. The event's stored JSON made once and walked for NUL and lone surrogates only when it
holds a `\\u` escape, the same for the raw body: -4%. What bounds the rest, by cProfile on
the CPU clock of our app's share of a request: the wake-up's Redis `SET NX` (redis-py's own
work) a fifth, the insert with its pool checkout a fifth (psycopg's own work most of it),
Flask's request machinery and our hooks (request context, routing, before/after/teardown
hooks, the WSGI answer) nearly a third, the signature check and the event's parsing a tenth.
Each is what the floor does too, or a behaviour the floor does without (request id, security
headers, metrics, the idempotency hooks every request passes). Under wrk, on this loaded
machine (load 3-9), quick runs of three (`--runs 3 --size 8`): the code before this round
0.70 (runs 0.70, 0.83, 0.63); the prepared insert alone 0.76 (0.76, 0.79, 0.70); with every
change 0.82, 0.87 and 1.02 in three such runs (nine runs from 0.52 to 1.10), so a quick
row says little more than the direction; the CPU figures above are the steadier
measure. The full rows were measured on a quiet machine (load about 1, 2026-12-01 17:43
UTC): ours 1,484-1,495 req/s against the floor's 996-1,514, ratios 0.99, 1.50 and 1.04 (the
floor's own figure is the one that swings); before this round, the same way at 15:35 UTC,
ours 1,246-1,405 req/s against 1,259-1,897, ratios 0.74, 0.75 and 1.07."""


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
