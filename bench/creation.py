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
it, load average 7-11 on 2 cores, so old and new code ran alternately and single runs swing
by 2x): a creation without a key is five round trips to PostgreSQL on ONE pooled
connection: the key lookup (one indexed SELECT in autocommit, no Session:
services/api_keys.py), then on the same connection (web/auth.py, keeps_connection)
BEGIN, the order locked together with the database clock, ONE statement that inserts the
attempt and its audit row and returns the detail view's columns
(services/payment_attempts.py), and the commit; the pool pings a connection only after it
idled a second (adapters/pool_health.py). With an Idempotency-Key the claim and the stored
answer join that one transaction (web/idempotency.InTransaction), one durable commit. The
three statements run as prepared statements by psycopg itself, each row made straight into
its class (adapters/prepared.py), which still tells the engine's cursor-execute listeners
and raises SQLAlchemy's errors (a dead connection: invalidated, 503). Through SQLAlchemy
each execution had built an execution context, asked the cursor for its ~30-column
description, set up a result and a Row: nearly a third of a creation's Python. callgrind,
200 creations through Flask's test client (instructions in the Python process, steady
under load): 4.54M a request before, 4.05M once the textual statements named their result
columns (SQLAlchemy then caches the result metadata instead of rebuilding it from the
description), 3.35M with the order lock and insert prepared in psycopg, 3.18M with the key
lookup too: -30%. Process CPU through the test client, alternating, three runs each:
medians 1.32-1.54 ms a request against 1.65-1.93 before. Quick wrk runs (`--runs 3 --size
8`), alternating with the previous code: 0.17 and 0.18 against 0.09 and 0.08. Of what is
left (cProfile, CPU): Flask's and werkzeug's request handling (headers, context locals, the
hooks) about a third; psycopg's own execute and wait for the three statements and the
commit about a quarter; the Session's begin, pool checkout and commit and (until the step
below) the key lookup's own checkout about a fifth; the JSON answer about 2% (23 us: the
app's encoder with its Decimal and datetime hook; not worth an encoder of its own that
could drift from the app's JSON). What bounds the rest: the durable commit (a 201 is a
payment that exists) and the BEGIN psycopg sends on its own are two round trips no
statement merge removes (a single locking statement would read payments with a snapshot
from before its lock wait). The second pool checkout (the key lookup's own) is gone since
2026-12-01 (machine loaded, load average 1-2), and the lookup switches autocommit on the
psycopg connection itself (adapters/db.autocommit_on): through SQLAlchemy's isolation_level
option the driver's two settings were switched four times a request, the pool's reset
included, each through psycopg's wait loop. callgrind, 200 creations through the test
client minus a run of none, alternating: 3.125M and 3.127M instructions a request before,
3.10M and 3.07M with one checkout, 2.96M with the driver's switch too (-5%). Quick wrk runs
(`--runs 3 --size 8`), alternating old and new: creations/s 924, 925, 925 (ratios 0.17,
0.16, 0.16) against 889, 903, 892 and 878, 875, 907 before (0.15 each); the one-checkout
step alone, 865-960 (0.16, 0.17, 0.16), was within the noise. The full rows of the previous
code were measured on a quiet machine (load about 1, 2026-12-01 15:52 UTC): 769-890
creations/s against 5,539-6,717 hello-world POSTs/s, ratios 0.13-0.15. This code's full
rows, on a quiet machine (load about 1, 2026-12-01 18:30 UTC): 887, 882 and 909 creations/s
against 6,066, 5,534 and 5,493 hello-world POSTs/s, ratios 0.146, 0.159, 0.165.
The code before the one-checkout step, the same way at 18:02 UTC: 902, 867 and 563
creations/s against 5,593-5,849, ratios 0.161, 0.148, 0.098 (the third run's creations
alone fell by a third; the hello-world runs beside it did not)."""


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



