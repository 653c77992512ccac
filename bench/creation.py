"""B5 payment creation: `POST /api/v1/payments` requests/s ÷ hello-world POST requests/s."""

from __future__ import annotations

import json

from adapters.resources import Resources
from bench import http_ratio
from bench.fixtures import BENCH_USER_ID, create_orders, empty_tables
from bench.progress import Progress
from bench.report import Machine, ScenarioResult, Target
from bench.wrk import CONNECTIONS, Request
from config import Settings
from services.api_keys import create_api_key

FULL_SIZE = 20   # seconds of load per side and run
QUICK_SIZE = 8

ABOUT = f"""\
Subject: `POST /api/v1/payments` with a user's API key, each request `{{"order_id": N, "method":
"wechat"}}` for its own fresh pending order of that user, so every one authenticates the key
(a SHA-256 lookup), locks the order, runs seed 000's checks, finds no active payment, inserts
the payment with its audit row and answers 201 with the payment's detail (its log included). No
`Idempotency-Key` (optional in the API). Baseline: `bench/hello.py`, sent the same bytes (the
Authorization header included). Both under the same gunicorn config (`web/gunicorn_conf.py`: 2
workers × 4 threads, JSON access log) and the same wrk settings (1 thread, {CONNECTIONS}
keep-alive connections), on the same 2 cores as PostgreSQL, alternating within each run."""

# Where the time goes; refresh when payment creation changes.
PROFILE = """\
Where the time goes (measured 2026-12-01 on the machine below while four other engineers
loaded it, so old and new code ran alternately): before this round a creation was about
sixteen round trips to PostgreSQL: a pool pre-ping and a BEGIN for each of its two
transactions, the API key lookup and its ROLLBACK, then nine ORM statements (the order
locked, the database clock, the active-payment check, the next attempt number, the insert,
its audit row, the payment and its log read back for the answer) and the commit;
`create_payment` through Flask's test client took 8-9 ms of CPU and 20-28 ms of wall time a
request here, and py-spy on a gunicorn worker under wrk found a third of its time in the
pool's pre-pings alone. Now it is five: the key lookup (one indexed SELECT in autocommit,
no BEGIN/ROLLBACK: services/api_keys.py), then BEGIN, the order locked together with the
database clock, ONE statement that inserts the attempt and its audit row and returns both
(the whole detail view: services/payment_attempts.py), and the commit; the pool pings a
connection only after it idled a second (adapters/pool_health.py). Through the test client
that is 2.6-4.6 ms of CPU and 4-8 ms of wall time a request, alternating with the old code
on the same machine; under wrk 3.5-4.7 ms of gunicorn CPU and 0.9-1.1 ms of PostgreSQL CPU a
request (was 4.9 and 1.7 on a quiet machine). py-spy (GIL samples) on a worker now: the
view and its two statements ~35%, the key lookup ~19%, Flask and gunicorn request
handling, Flask-Limiter's before-request check (~5%) and the JSON access line (~5%) most of
the rest. What bounds the rest: the durable commit (a 201 is a payment that exists) and the
BEGIN psycopg sends on its own are two round trips no statement merge removes; a creation
still costs about ten hello-world requests of CPU, most of it SQLAlchemy's and Flask's
per-request Python, not PostgreSQL."""


class _Requests:
    """The user's key is made once per scenario; orders for every batch of requests."""

    def __init__(self) -> None:
        self.key: str | None = None

    def prepare(self, res: Resources, count: int) -> list[Request]:
        if self.key is None:
            self.key = create_api_key(res.uow(), "user", BENCH_USER_ID, name="bench B5")
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        return [Request("POST", "/api/v1/payments",
                        json.dumps({"order_id": order_id, "method": "wechat"}), headers)
                for order_id in create_orders(res, count)]


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine) -> ScenarioResult:
    spec = http_ratio.HttpScenario(
        scenario="B5", title="payment creation: `POST /api/v1/payments` ÷ hello-world POST",
        target=Target(0.15, at_most=False), about=f"{ABOUT}\n\n{PROFILE}",
        prepare=_Requests().prepare, stored_in="payments", reset=empty_tables)
    return http_ratio.run(spec, settings, progress, size=size, runs=runs, mode=mode,
                          machine=machine)



