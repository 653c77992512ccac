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
        target=Target(0.4, at_most=False), about=ABOUT, prepare=_Requests().prepare,
        stored_in="payments", reset=empty_tables)
    return http_ratio.run(spec, settings, progress, size=size, runs=runs, mode=mode,
                          machine=machine)



