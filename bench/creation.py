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
the payment with its audit row and answers 201 with the payment's detail. No
`Idempotency-Key` (optional in the API). Baseline: `bench/hello.py`, sent the same bytes (the
Authorization header included). Both under the same gunicorn config (`web/gunicorn_conf.py`: 2
workers × 4 threads, JSON access log) and the same wrk settings (1 thread, {CONNECTIONS}
keep-alive connections), on the same 2 cores as PostgreSQL, alternating within each run."""

# Where the time goes; refresh when payment creation changes.
PROFILE = """\
Where the time goes (measured 2026-12-01 on the machine below, quiet): CPU time per request
over a wrk run: hello-world 0.39 ms in gunicorn; a payment creation 4.9 ms in gunicorn and 1.7
ms in PostgreSQL. A creation is two transactions and eleven statements: the API key lookup,
then the order locked, the database clock, the active-payment check, the next attempt number,
the insert, its audit row, and the payment with its log read back for the answer, and the
commit. `create_payment` alone, called in a loop, takes 3.0–3.2 ms of CPU; by cProfile,
psycopg 49% of its time (mostly waiting on PostgreSQL), SQLAlchemy 39% (ORM statements and
row loading), our own code about 3%. Fixed on the way: the insert ran inside a SAVEPOINT to
catch the one-active-payment index's violation (two more round trips and SQLAlchemy's nested
transaction); it is now one prebuilt `INSERT ... ON CONFLICT DO NOTHING` on that index (3.8 →
3.1 ms), and audit rows go through a Core insert. What bounds the rest: eleven round trips
through the ORM cost roughly fifteen hello-world requests here; 0.4 would need a creation in
about 1 ms of Python and PostgreSQL together, i.e. a hand-written single-statement path
without the ORM."""


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
        target=Target(0.4, at_most=False), about=f"{ABOUT}\n\n{PROFILE}",
        prepare=_Requests().prepare, stored_in="payments", reset=empty_tables)
    return http_ratio.run(spec, settings, progress, size=size, runs=runs, mode=mode,
                          machine=machine)



