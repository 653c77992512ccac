"""The payment funnel's counters agree with the formulas the README gives for them.

Transitions run through the real services against PostgreSQL; counters are read in
this process (the README's formulas, applied to what one scrape would show).
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from domain.statuses import PaymentStatus
from services.transitions import transition_payment
from tests.support.callbacks import post_callback
from tests.support.factories import make_order, make_payment

OUTCOMES = ("succeeded", "failed", "cancelled", "expired")


def _funnel() -> dict[str, float]:
    def get(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    counts = {s: get("payments_payments_final_total", status=s) for s in OUTCOMES}
    counts["refunded"] = get("payments_payments_refunded_total")
    counts["late"] = get("payments_payments_late_succeeded_total")
    counts["refunded_label"] = get("payments_payments_final_total", status="refunded")
    return counts


def _moves(res, payment_id: int, *statuses: PaymentStatus) -> None:
    for status in statuses:
        with res.uow() as uow:
            assert transition_payment(uow.session, payment_id, status, actor="test",
                                      event=f"payment_{status.value}") is not None
            uow.commit()


def _success_rate(before: dict, after: dict) -> float:
    """README: succeeded / (succeeded + failed + cancelled + expired - late successes)."""
    d = {k: after[k] - before[k] for k in after}
    return d["succeeded"] / (sum(d[s] for s in OUTCOMES) - d["late"])


def test_one_good_payment_refunded_is_a_100_percent_success_rate(clean_db):
    before = _funnel()
    payment = make_payment(clean_db, make_order(clean_db), status="processing")
    _moves(clean_db, payment, PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
    after = _funnel()
    assert _success_rate(before, after) == 1.0
    assert after["refunded"] - before["refunded"] == 1  # refund rate: refunded / succeeded
    assert after["refunded_label"] == before["refunded_label"] == 0


def test_a_late_success_is_not_two_payments(clean_db):
    before = _funnel()
    good = make_payment(clean_db, make_order(clean_db), status="processing")
    late = make_payment(clean_db, make_order(clean_db), status="processing")
    bad = make_payment(clean_db, make_order(clean_db), status="processing")
    _moves(clean_db, good, PaymentStatus.SUCCEEDED)
    _moves(clean_db, late, PaymentStatus.EXPIRED, PaymentStatus.SUCCEEDED)
    _moves(clean_db, bad, PaymentStatus.FAILED)
    after = _funnel()
    assert after["late"] - before["late"] == 1
    assert _success_rate(before, after) == 2 / 3


def test_an_oversized_callback_is_counted(api, clean_db):
    def too_large() -> float:
        return REGISTRY.get_sample_value(
            "payments_callbacks_total", {"provider": "sandbox", "outcome": "too_large"}) or 0.0

    before = too_large()
    response = post_callback(api.base_url, b'{"id": "evt_big", "pad": "' + b"x" * 70_000 + b'"}')
    assert response.status_code == 413
    assert response.json()["code"] == "request_entity_too_large"
    assert too_large() - before == 1
    unknown = api.post("/callbacks/nobody", data=b"x" * 70_000)
    assert unknown.status_code == 404  # an unknown provider: refused before reading
    assert REGISTRY.get_sample_value("payments_callbacks_total",
                                     {"provider": "nobody", "outcome": "too_large"}) is None
