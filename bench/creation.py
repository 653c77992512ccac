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
Where the time goes (measured 2026-12-01 on the machine below while other engineers loaded
it, load average 9-10 on 2 cores, so old and new code ran alternately and single runs swing
by 2x): a creation without a key is five round trips to PostgreSQL: the key lookup (one
indexed SELECT in autocommit on a plain pooled connection, no Session: services/api_keys.py,
adapters/db.UnitOfWork.autocommit), then BEGIN, the order locked together with the database
clock, ONE statement that inserts the attempt and its audit row and returns both (the whole
detail view: services/payment_attempts.py), and the commit; the pool pings a connection only
after it idled a second (adapters/pool_health.py). With an Idempotency-Key the claim (INSERT
... ON CONFLICT DO NOTHING) and the stored answer join that one transaction (web/
idempotency.InTransaction), one durable commit where there were three (claim, creation,
answer each committed on its own). cProfile of `create_payment` through Flask's test client
(process CPU, 600 requests, alternating with the previous code): 1.3-1.7 ms of CPU a request
against 1.4-2.2 before, the saving the key lookup's Session bookkeeping (begin, connection,
rollback, close) that ran on every request for one SELECT. Of what is left (cProfile, CPU):
SQLAlchemy's execute and result set-up for the three statements about half (building result
metadata from the cursor's ~30-column description on each execution is the largest single
part), the view's JSON answer and Flask's request handling most of the rest; no
rate-limit hook runs any more (the callbacks' refusal counter is consulted only after a
refused signature). What bounds the rest: the durable commit (a 201 is a payment that
exists) and the BEGIN psycopg sends on its own are two round trips no statement merge
removes (a single locking statement would read payments with a snapshot from before its
lock wait); a creation still costs about ten hello-world requests of CPU, most of it
SQLAlchemy's and Flask's per-request Python, not PostgreSQL. Open: quick wrk runs of this
code, alternating with the previous (main's) code, spread widely on this loaded machine:
0.07-0.22 (median 0.12 of eight) against 0.04-0.17 (median 0.14 of eight). The steady
measures show no difference to explain that: the same five round trips a request for
both (a libpq trace of the pool's connections, 200 requests one by one and 400 from four
threads: the lookup, BEGIN, two statements, COMMIT; no SET, no ROLLBACK on the pool's
return, no second connection), as much test-client CPU or less (medians 1.0-1.4 ms a
request here, 1.1-1.6 before, alternating), and less gunicorn CPU a request under wrk
(1.6-2.1 ms against 1.7-3.5; PostgreSQL's backends 0.3-0.6 ms against 0.3-0.9). The full
rows were measured on a quiet machine (load about 1, 2026-12-01 15:52 UTC): 769-890 creations/s
against 5,539-6,717 hello-world POSTs/s, ratios 0.13-0.15, a hair under the target: the
per-request Python above (SQLAlchemy's result set-up, Flask) is what is left to cut."""


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



