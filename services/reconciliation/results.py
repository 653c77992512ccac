"""A run's row and its items: started, failed, or finished with what it found.

A re-run of a provider's day updates the same run row and replaces its flagged items
with what it finds now; the items earlier attempts applied stay (what the run changed).
A discrepancy is announced once per provider day, the first time it is found: an
event (`reconciliation.mismatch`, through the outbox, in the same transaction as its
item) and a count in payments_reconciliation_mismatches_total. So running a day again
changes nothing that was already told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from adapters.metrics import RECONCILIATION_MISMATCHES, RECONCILIATION_RUNS, count_on_commit
from adapters.resources import Resources
from domain.reconciliation import Finding, ItemStatus
from domain.reconciliation_models import ReconciliationItem, ReconciliationRun
from domain.statements import LineKind
from domain.webhooks import EventType
from services.webhooks.outbox import record_event as record_webhook_event

MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class Item:
    finding: Finding
    status: ItemStatus
    detail: str | None = None

    def row(self, run_id: int) -> dict[str, object]:
        f = self.finding
        line = f.line
        ours_amount: Decimal | None = None
        ours_currency = ours_transaction = None
        if f.refund is not None:
            ours_amount, ours_currency = f.refund.amount, f.refund.currency
            ours_transaction = f.refund.provider_refund_id
        elif f.payment is not None:
            ours_amount, ours_currency = f.payment.amount, f.payment.currency
            ours_transaction = f.payment.transaction_id
        theirs_transaction = None
        if line is not None:
            theirs_transaction = (line.refund_reference if f.object is LineKind.REFUND
                                  else line.transaction_id)
        assert f.kind is not None
        return {"run_id": run_id, "object": f.object.value, "kind": f.kind.value,
                "status": self.status.value, "reference": f.reference[:64],
                "payment_id": f.payment_id, "refund_id": f.refund_id,
                "our_amount": ours_amount, "our_currency": ours_currency,
                "our_transaction_id": ours_transaction,
                "provider_amount": line.amount if line else None,
                "provider_currency": line.currency if line else None,
                "provider_transaction_id": theirs_transaction, "detail": self.detail}


def start_run(res: Resources, provider: str, day: date) -> int:
    with res.uow() as uow:
        run_id = uow.session.execute(
            pg_insert(ReconciliationRun)
            .values(provider=provider, statement_date=day, status="running", attempts=1)
            .on_conflict_do_update(
                index_elements=["provider", "statement_date"],
                set_={"status": "running", "attempts": ReconciliationRun.attempts + 1,
                      "error": None, "started_at": func.now(), "finished_at": None,
                      "updated_at": func.now()})
            .returning(ReconciliationRun.id)).scalar_one()
        uow.commit()
    return int(run_id)


def fail_run(res: Resources, run_id: int, provider: str, reason: str) -> None:
    with res.uow() as uow:
        uow.session.execute(
            update(ReconciliationRun).where(ReconciliationRun.id == run_id)
            .values(status="failed", error=reason[:MAX_ERROR_LENGTH], finished_at=func.now(),
                    updated_at=func.now())
            .execution_options(synchronize_session=False))
        count_on_commit(uow.session, RECONCILIATION_RUNS.labels(provider, "failed"))
        uow.commit()


def finish_run(res: Resources, run_id: int, provider: str, *, statement_lines: int,
               matched: int, items: Sequence[Item]) -> dict[str, int]:
    with res.uow() as uow:
        session = uow.session
        session.execute(select(ReconciliationRun.id).where(ReconciliationRun.id == run_id)
                        .with_for_update())
        told = {(r.object, r.kind, r.reference) for r in session.execute(
            select(ReconciliationItem.object, ReconciliationItem.kind,
                   ReconciliationItem.reference)
            .where(ReconciliationItem.run_id == run_id))}
        session.execute(delete(ReconciliationItem).where(
            ReconciliationItem.run_id == run_id,
            ReconciliationItem.status == ItemStatus.FLAGGED.value)
            .execution_options(synchronize_session=False))
        for item in items:
            item_id = session.execute(insert(ReconciliationItem).values(**item.row(run_id))
                                      .returning(ReconciliationItem.id)).scalar_one()
            kind = item.finding.kind
            assert kind is not None
            if (item.finding.object.value, kind.value, item.finding.reference[:64]) in told:
                continue  # found by an earlier attempt of this day: told then
            record_webhook_event(session, EventType.RECONCILIATION_MISMATCH, item_id)
            count_on_commit(session, RECONCILIATION_MISMATCHES.labels(provider, kind.value))
        counts = dict(session.execute(
            select(ReconciliationItem.status, func.count())
            .where(ReconciliationItem.run_id == run_id)
            .group_by(ReconciliationItem.status)).tuples().all())
        summary = {"statement_lines": statement_lines, "matched": matched,
                   "applied": counts.get(ItemStatus.APPLIED.value, 0),
                   "flagged": counts.get(ItemStatus.FLAGGED.value, 0)}
        session.execute(
            update(ReconciliationRun).where(ReconciliationRun.id == run_id)
            .values(status="succeeded", error=None, finished_at=func.now(),
                    updated_at=func.now(), **summary)
            .execution_options(synchronize_session=False))
        count_on_commit(session, RECONCILIATION_RUNS.labels(provider, "succeeded"))
        uow.commit()
    return summary
