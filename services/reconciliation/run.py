"""The use case: reconcile one provider's day, or every routed provider's (issue #17).

1. The run row is marked running (one per provider and day; a re-run reuses it).
2. The statement is fetched and parsed (the connector's job) before anything else is
   touched: a statement that cannot be had or trusted makes the run `failed` with the
   reason, changes no payment, and raises ReconciliationFailed for the caller to retry.
3. Our books of the day are read and compared (domain/reconciliation.py).
4. Successes the provider reports and we lack are applied through the settlement a
   callback goes through (apply.py); everything else found is flagged.
5. The run's items, events and metrics are written (results.py).

One run per provider day at a time (a Redis lock, as the sweeps take theirs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import DBAPIError

from adapters.locks import LockBusy
from adapters.providers.base import ProviderError
from adapters.resources import Resources
from adapters.run_once import run_once
from domain.money import format_amount
from domain.reconciliation import Action, Finding, ItemStatus, Kind, compare
from domain.reconciliation_models import ReconciliationRun
from domain.statements import StatementUnavailable
from services.reconciliation.apply import apply_finding
from services.reconciliation.books import day_window, read_books
from services.reconciliation.results import Item, fail_run, finish_run, start_run
from services.settlement import SettlementConflict

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 900  # longer than any run: a statement of a busy day takes a while


class ReconciliationFailed(Exception):
    def __init__(self, provider: str, day: date, reason: str) -> None:
        super().__init__(f"reconciliation of {provider} on {day.isoformat()} failed: {reason}")
        self.provider, self.day, self.reason = provider, day, reason


def statement_day(res: Resources, now: datetime | None = None) -> date:
    """The day a run at `now` reconciles: yesterday, in RECONCILE_TZ."""
    zone = ZoneInfo(res.settings.reconcile_tz)
    return ((now or datetime.now(zone)).astimezone(zone) - timedelta(days=1)).date()


def routed_providers(res: Resources) -> list[str]:
    """The providers that serve a method here. The wallet has none: never reconciled."""
    return sorted(set(res.providers.routes.values()))


def reconcile_day(res: Resources, provider: str, day: date) -> dict[str, Any]:
    """The run's summary; {"skipped": ...} while another run of the same day is going.
    Raises ReconciliationFailed (the run is then `failed`, with the reason)."""
    return run_once(res.redis, f"reconcile:{provider}:{day.isoformat()}", LOCK_TTL_SECONDS,
                    lambda: _reconcile(res, provider, day))


def _reconcile(res: Resources, provider: str, day: date) -> dict[str, Any]:
    started = time.monotonic()
    run_id = start_run(res, provider, day)
    try:
        statement = res.providers.by_name(provider).fetch_statement(day)
    except StatementUnavailable as exc:
        raise _failed(res, run_id, provider, day, exc.reason) from exc
    except (ProviderError, KeyError) as exc:
        raise _failed(res, run_id, provider, day, f"statement not fetched: {exc}") from exc
    with res.uow() as uow:
        books = read_books(uow.session, statement, res.settings.reconcile_tz)
    items: list[Item] = []
    matched = 0
    try:
        for finding in compare(statement.lines, books):
            if finding.action is Action.MATCH:
                matched += 1
            elif finding.action is Action.FLAG:
                items.append(Item(finding, ItemStatus.FLAGGED, describe(finding)))
            else:
                item = _apply(res, provider, day, finding)
                if item is None:
                    matched += 1
                else:
                    items.append(item)
    except (LockBusy, SettlementConflict, DBAPIError) as exc:
        # What was applied so far stays applied (each in its own transaction); the
        # retry finds those matched and carries on with the rest.
        raise _failed(res, run_id, provider, day, f"{type(exc).__name__}: {exc}") from exc
    summary = finish_run(res, run_id, provider, statement_lines=len(statement.lines),
                         matched=matched, items=items)
    seconds = round(time.monotonic() - started, 3)
    log.info("reconcile %s %s: %s lines, %s matched, %s applied, %s flagged in %.3f s",
             provider, day, summary["statement_lines"], summary["matched"],
             summary["applied"], summary["flagged"], seconds)
    return {"provider": provider, "date": day.isoformat(), "run_id": run_id,
            "status": "succeeded", **summary, "seconds": seconds}


def _apply(res: Resources, provider: str, day: date, finding: Finding) -> Item | None:
    """The applied item; a flagged one when the settlement refused it; None when a
    callback had applied it first (nothing left to tell)."""
    day_start, _ = day_window(day, res.settings.reconcile_tz)
    outcome = apply_finding(res, provider, finding,
                            event_id=f"reconcile:{day.isoformat()}:{finding.reference}",
                            day_start=day_start)
    if outcome.changed:
        return Item(finding, ItemStatus.APPLIED, describe(finding))
    if outcome.already:
        return None
    line = finding.line
    assert line is not None
    ours = finding.refund or finding.payment
    assert ours is not None
    kind = (Kind.CURRENCY_MISMATCH if line.currency != ours.currency else
            Kind.AMOUNT_MISMATCH if line.amount != ours.amount else Kind.MISSING_HERE)
    return Item(replace(finding, kind=kind), ItemStatus.FLAGGED,
                f"{describe(replace(finding, kind=kind))}; not applied: {outcome.note}")


def _failed(res: Resources, run_id: int, provider: str, day: date,
            reason: str) -> ReconciliationFailed:
    log.warning("reconcile %s %s failed: %s", provider, day, reason)
    fail_run(res, run_id, provider, reason)
    return ReconciliationFailed(provider, day, reason)


def describe(finding: Finding) -> str:
    """One sentence for the operator."""
    line, ours = finding.line, finding.refund or finding.payment
    what = finding.object.value
    if finding.kind is Kind.MISSING_HERE:
        return f"the provider has this {what} succeeded; it was not succeeded here"
    if finding.kind is Kind.UNKNOWN_HERE:
        return f"the provider has a {what} with a reference we never issued"
    if finding.kind is Kind.MISSING_AT_PROVIDER:
        return "succeeded here that day; the provider's statement does not have it"
    if finding.kind is Kind.STATUS_MISMATCH:
        return f"the provider paid out this {what}; here it failed"
    assert line is not None and ours is not None
    if finding.kind is Kind.TRANSACTION_ID_MISMATCH:
        return "the provider names another transaction id for it"
    return (f"ours {format_amount(ours.amount, ours.currency)} {ours.currency}, the "
            f"provider's {format_amount(line.amount, line.currency)} {line.currency}")


# The daily tick also takes up the days of this past week whose run failed for good (its
# task's retries spent) or died running (a worker killed mid-run), so no day is left
# unreconciled for longer than a day.
CATCH_UP_DAYS = 7
STALE_RUNNING_SECONDS = 3600


def unfinished_days(res: Resources, *, before: date) -> list[tuple[str, date]]:
    """(provider, day) of the past CATCH_UP_DAYS before `before` whose run is failed, or
    still running long after any run would have ended."""
    stale = func.now() - timedelta(seconds=STALE_RUNNING_SECONDS)
    with res.uow() as uow:
        rows = uow.session.execute(
            select(ReconciliationRun.provider, ReconciliationRun.statement_date)
            .where(ReconciliationRun.statement_date < before,
                   ReconciliationRun.statement_date >= before - timedelta(days=CATCH_UP_DAYS),
                   or_(ReconciliationRun.status == "failed",
                       and_(ReconciliationRun.status == "running",
                            ReconciliationRun.started_at < stale)))
            .order_by(ReconciliationRun.statement_date, ReconciliationRun.provider)).all()
    routed = set(routed_providers(res))
    return [(r.provider, r.statement_date) for r in rows if r.provider in routed]


def reconcile_daily(res: Resources) -> tuple[list[dict[str, Any]],
                                             list[ReconciliationFailed]]:
    """Beat's tick: yesterday for every routed provider, then the unfinished days of the
    past week."""
    day = statement_day(res)
    done, failed = reconcile(res, day=day)
    for provider, earlier in unfinished_days(res, before=day):
        more_done, more_failed = reconcile(res, day=earlier, providers=[provider])
        done += more_done
        failed += more_failed
    return done, failed


def reconcile(res: Resources, *, day: date | None = None,
              providers: list[str] | None = None) -> tuple[list[dict[str, Any]],
                                                         list[ReconciliationFailed]]:
    """Every routed provider's day (or those named): each one's summary, and the
    failures (the others still ran)."""
    day = day or statement_day(res)
    done: list[dict[str, Any]] = []
    failed: list[ReconciliationFailed] = []
    for name in providers or routed_providers(res):
        try:
            done.append(reconcile_day(res, name, day))
        except ReconciliationFailed as exc:
            failed.append(exc)
    return done, failed
