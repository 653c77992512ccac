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
Where the time goes (measured 2026-12-01 on the machine below, shared with four other
engineers' test runs: load average 10-12 on 2 cores, so absolute figures are a fifth of a quiet
machine's and every round trip waits for a core). CPU per request, both apps driven in one
process through Flask's test client: ours 2.8 ms, the floor 1.6 ms (ours was 4.2 ms before the
last two changes below). The requests make the same number of round trips (ours: the
rate limiter's Redis GET, the INSERT, the wake-up's `SET NX`; the floor: BEGIN, INSERT, COMMIT,
LPUSH), so the gap is Python: by cProfile, Flask-Limiter's check before every callback (its
Redis read and its own bookkeeping) is about a third of our request, SQLAlchemy's execution of
the prebuilt insert a sixth, Flask's and our request hooks (request id, security headers,
metrics) most of the rest; our own code (signature check, parsing, the storable check) a few
per cent. Changed on the way: the wake-up replaces one `callbacks.process` message per callback
(Celery's message building and publish were most of the old gap); the insert runs in
autocommit (committed when it returns, without BEGIN and COMMIT round trips) on a pool that does
not ping on checkout (a connection found dead is retried once: the insert is idempotent); no
X-RateLimit headers (one Redis read less). What bounds the rest: the rate limiter's check, which
needs a Redis read for every callback because it runs before the signature is known to be good;
checking it only after a signature fails (an address over the limit would still cost an HMAC
check per request) would remove a third of our request, and is the next step. The ratio varied
widely with the machine's load (0.19-0.50 in these runs, 0.82 in a single run earlier in the
hour), so the quick row is a miss, measured on a loaded machine."""


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
