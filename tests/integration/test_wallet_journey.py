"""One wallet's life over real HTTP, with a real worker and the sandbox provider
(DESIGN.md §10): credit, pay from the balance, a partial and a full refund, a top-up paid
at the sandbox. After each step the balance and the ledger are read from PostgreSQL;
`payments wallets verify` (the real console script) passes, then fails once a balance is
corrupted behind the ledger's back."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.payment_flow import PaymentFlow
from tests.support.wallets import balance, balance_order, credit, entries, ledger_sum

PAYMENTS_CLI = str(Path(sys.executable).parent / "payments")
USER = 21
D = Decimal


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker, make_user_key) -> PaymentFlow:
    make_user_key(USER)
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def verify(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([PAYMENTS_CLI, "wallets", "verify"], env=env, capture_output=True,
                          text=True, timeout=60)


def assert_wallet(res, expected_balance: str, expected_entries: list[tuple[str, str, str]]):
    assert balance(res, USER) == D(expected_balance)
    assert entries(res, USER) == [(k, D(a), D(b)) for k, a, b in expected_entries]
    assert ledger_sum(res, USER) == D(expected_balance)


def test_credit_pay_refunds_and_topup_keep_balance_and_ledger_equal(flow, clean_db,
                                                                    stack_env):
    admin, res = flow.admin, clean_db
    ledger = [("credit", "100.00", "100.00")]
    credit(admin, USER, "100.00")
    assert_wallet(res, "100.00", ledger)

    order, payment = balance_order(admin, USER, "60.00")
    paid = admin.post(f"/api/v1/payments/{payment['id']}/pay")
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["provider"]) == ("succeeded", "wallet")
    assert flow.get_order(order["id"])["status"] == "paid"
    ledger.append(("payment", "-60.00", "40.00"))
    assert_wallet(res, "40.00", ledger)

    partial = admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                         json={"amount": "15.00", "reason": "one item back"})
    assert partial.status_code == 202, partial.text
    assert partial.json()["status"] == "succeeded"  # credited at once, no provider
    assert flow.get(payment["id"])["status"] == "partially_refunded"
    assert flow.get_order(order["id"])["status"] == "paid"
    ledger.append(("refund", "15.00", "55.00"))
    assert_wallet(res, "55.00", ledger)

    full = admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})
    assert full.status_code == 202, full.text
    assert (full.json()["amount"], full.json()["status"]) == ("45.00", "succeeded")
    done = flow.get(payment["id"])
    assert (done["status"], done["refunded_amount"]) == ("refunded", "60.00")
    assert flow.get_order(order["id"])["status"] == "refunded"
    ledger.append(("refund", "45.00", "100.00"))
    assert_wallet(res, "100.00", ledger)

    topup = admin.post("/api/v1/orders", json={"total_amount": "25.50", "user_id": USER,
                                               "purpose": "wallet_topup"})
    assert topup.status_code == 201, topup.text
    assert topup.json()["purpose"] == "wallet_topup"
    topup_payment = flow.payment(topup.json()["id"], "alipay")
    pay_url = flow.pay(topup_payment["id"])
    assert_wallet(res, "100.00", ledger)  # nothing until the provider says paid
    flow.press(pay_url, "approve")
    flow.wait_status(topup_payment["id"], "succeeded")
    flow.settle(pay_url)
    assert flow.get_order(topup.json()["id"])["status"] == "paid"
    ledger.append(("topup", "25.50", "125.50"))
    assert_wallet(res, "125.50", ledger)

    ok = verify(stack_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 differ" in ok.stdout

    with res.uow() as uow:  # behind the ledger's back
        uow.session.execute(text("UPDATE wallets SET balance = balance + 1 WHERE user_id = :u"),
                            {"u": USER})
        uow.commit()
    broken = verify(stack_env)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"wallet {USER}: balance 126.50, ledger sums to 125.50" in broken.stdout
