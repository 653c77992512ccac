"""The admin's view of the reconciliation: runs, newest day first, and a run's items."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select

from adapters.resources import Resources
from domain.errors import InvalidInput, NotFound
from domain.ids import MAX_BIGINT
from domain.money import format_amount
from domain.reconciliation import ItemStatus
from domain.reconciliation_models import RUN_STATUSES, ReconciliationItem, ReconciliationRun


def list_runs(res: Resources, *, provider: str | None = None, status: str | None = None,
              day: date | None = None, page: int = 1, page_size: int = 20) -> dict[str, Any]:
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(RUN_STATUSES)}",
                           code="invalid_status", field="status")
    filters = []
    if provider is not None:
        filters.append(ReconciliationRun.provider == provider)
    if status is not None:
        filters.append(ReconciliationRun.status == status)
    if day is not None:
        filters.append(ReconciliationRun.statement_date == day)
    with res.uow() as uow:
        total = uow.session.execute(select(func.count()).select_from(ReconciliationRun)
                                    .where(*filters)).scalar_one()
        rows = uow.session.scalars(
            select(ReconciliationRun).where(*filters)
            .order_by(ReconciliationRun.statement_date.desc(), ReconciliationRun.id.desc())
            .offset((page - 1) * page_size).limit(page_size)).all()
        return {"items": [run_view(r) for r in rows], "page": page, "page_size": page_size,
                "total": total}


def list_items(res: Resources, run_id: int, *, status: str | None = None, page: int = 1,
               page_size: int = 50) -> dict[str, Any]:
    allowed = [s.value for s in ItemStatus]
    if status is not None and status not in allowed:
        raise InvalidInput(f"status must be one of {', '.join(allowed)}",
                           code="invalid_status", field="status")
    with res.uow() as uow:
        if not 0 < run_id <= MAX_BIGINT or uow.session.get(ReconciliationRun, run_id) is None:
            raise NotFound(f"Reconciliation run {run_id} not found",
                           code="reconciliation_run_not_found")
        filters = [ReconciliationItem.run_id == run_id]
        if status is not None:
            filters.append(ReconciliationItem.status == status)
        total = uow.session.execute(select(func.count()).select_from(ReconciliationItem)
                                    .where(*filters)).scalar_one()
        rows = uow.session.scalars(
            select(ReconciliationItem).where(*filters).order_by(ReconciliationItem.id)
            .offset((page - 1) * page_size).limit(page_size)).all()
        return {"items": [item_view(i) for i in rows], "page": page, "page_size": page_size,
                "total": total}


def run_view(run: ReconciliationRun) -> dict[str, Any]:
    return {"id": run.id, "provider": run.provider,
            "statement_date": run.statement_date.isoformat(), "status": run.status,
            "attempts": run.attempts, "error": run.error,
            "statement_lines": run.statement_lines, "matched": run.matched,
            "applied": run.applied, "flagged": run.flagged, "started_at": run.started_at,
            "finished_at": run.finished_at}


def item_view(item: ReconciliationItem) -> dict[str, Any]:
    def money(amount: Any, currency: str | None) -> str | None:
        return None if amount is None else format_amount(amount, currency)

    return {"id": item.id, "run_id": item.run_id, "object": item.object, "kind": item.kind,
            "status": item.status, "reference": item.reference,
            "payment_id": item.payment_id, "refund_id": item.refund_id,
            "our_amount": money(item.our_amount, item.our_currency),
            "our_currency": item.our_currency,
            "provider_amount": money(item.provider_amount, item.provider_currency),
            "provider_currency": item.provider_currency,
            "our_transaction_id": item.our_transaction_id,
            "provider_transaction_id": item.provider_transaction_id,
            "detail": item.detail, "created_at": item.created_at}
