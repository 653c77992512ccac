"""The daily reconciliation in the OpenAPI document (issue #17): runs and their items.

web/openapi.py merges reconciliation_paths() (built with its operation helpers) and
RECONCILIATION_SCHEMAS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.reconciliation import ItemStatus, Kind
from domain.reconciliation_models import RUN_STATUSES
from domain.statements import LineKind
from web.openapi_schemas import ID, TIMESTAMP, Schema, array, nullable, obj, ref, string

API = "/api/v1"
TAG = "reconciliation"
DATE = string(format="date", examples=["2026-12-01"])
MONEY = string(pattern=r"^\d+(\.\d+)?$", examples=["88.80"])
_PAGE = dict(page={"type": "integer", "minimum": 1},
             page_size={"type": "integer", "minimum": 1, "maximum": 100},
             total={"type": "integer", "minimum": 0})

RECONCILIATION_SCHEMAS: dict[str, Schema] = {
    "ReconciliationRun": obj(
        ["id", "provider", "statement_date", "status", "attempts"], id=ID,
        provider=string(examples=["wechatpay"]), statement_date=DATE,
        status=string(enum=list(RUN_STATUSES)),
        attempts={"type": "integer", "description": "Runs of this day so far (re-runs and "
                                                    "retries update the same run)"},
        error=nullable(string("Why the last attempt failed (the statement could not be "
                              "fetched or trusted)")),
        statement_lines={"type": "integer"}, matched={"type": "integer"},
        applied={"type": "integer"}, flagged={"type": "integer"}, started_at=TIMESTAMP,
        finished_at=nullable(TIMESTAMP)),
    "ReconciliationRunPage": obj(["items", "page", "page_size", "total"],
                                 items=array(ref("ReconciliationRun")), **_PAGE),
    "ReconciliationItem": obj(
        ["id", "run_id", "object", "kind", "status", "reference"], id=ID, run_id=ID,
        object=string(enum=[k.value for k in LineKind]),
        kind=string(enum=[k.value for k in Kind]),
        status=string("applied: the run applied the provider's success; flagged: for a "
                      "person", enum=[s.value for s in ItemStatus]),
        reference=string("Our out_trade_no / out_refund_no (the sandbox: our id)"),
        payment_id=nullable(ID), refund_id=nullable(ID), our_amount=nullable(MONEY),
        our_currency=nullable(string()), provider_amount=nullable(MONEY),
        provider_currency=nullable(string()), our_transaction_id=nullable(string()),
        provider_transaction_id=nullable(string()),
        detail=string("What differs, in a sentence", examples=["ours 88.80 CNY, the "
                                                               "provider's 99.00 CNY"]),
        created_at=TIMESTAMP),
    "ReconciliationItemPage": obj(["items", "page", "page_size", "total"],
                                  items=array(ref("ReconciliationItem")), **_PAGE),
}


def reconciliation_paths(*, operation: Callable[..., Schema], ok: Callable[..., Schema],
                         query: Callable[..., Schema]) -> dict[str, dict[str, Schema]]:
    page: Any = query("page", {"type": "integer", "minimum": 1, "default": 1}, "Page")
    return {
        f"{API}/reconciliation/runs": {"get": operation(
            "listReconciliationRuns", "Daily reconciliation runs, newest day first", TAG,
            auth="admin",
            description="One run per routed provider and statement day "
                        "(`maintenance.reconcile` daily at RECONCILE_AT in RECONCILE_TZ, or "
                        "`payments reconcile --date`). A re-run of a day updates its run.",
            params=[query("provider", string(), "Only this provider's"),
                    query("status", string(enum=list(RUN_STATUSES)), "Only this status"),
                    query("date", DATE, "Only this statement day"), page,
                    query("page_size", {"type": "integer", "minimum": 1, "maximum": 100,
                                        "default": 20}, "Runs per page")],
            ok={200: ok("One page of runs", ref("ReconciliationRunPage"))},
            errors={400: "`invalid_status`, `invalid_field` (date, page)"})},
        f"{API}/reconciliation/runs/{{run_id}}/items": {"get": operation(
            "listReconciliationItems", "A run's discrepancies", TAG, auth="admin",
            params=[{"name": "run_id", "in": "path", "required": True,
                     "description": "Reconciliation run id", "schema": ID},
                    query("status", string(enum=[s.value for s in ItemStatus]),
                          "Only applied or only flagged"), page,
                    query("page_size", {"type": "integer", "minimum": 1, "maximum": 100,
                                        "default": 50}, "Items per page")],
            ok={200: ok("Oldest first", ref("ReconciliationItemPage"))},
            errors={400: "`invalid_status`, `invalid_field`",
                    404: "No such run (`reconciliation_run_not_found`)"})},
    }
