"""Wallets over real HTTP (DESIGN.md §10): admin credits, the wallet and its ledger for
its owner and admins, and every bad input refused with a clear 4xx and nothing written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.wallets import balance, counts, credit, entries

USER = 7


@pytest.fixture
def admin(api, admin_key):
    return api.as_key(admin_key)


@pytest.fixture
def owner(api, make_user_key):
    return api.as_key(make_user_key(USER))


def test_a_wallet_never_used_reads_as_zero_without_being_written(admin, owner, clean_db):
    for client in (admin, owner):
        response = client.get(f"/api/v1/wallets/{USER}")
        assert response.status_code == 200, response.text
        assert response.json() == {"user_id": USER, "balance": "0.00", "currency": "CNY",
                                   "updated_at": None}
    assert counts(clean_db)["wallets"] == 0


def test_credits_build_the_ledger_newest_first_with_the_balance_after(admin, owner, clean_db):
    first = credit(admin, USER, "100.00", "welcome bonus")
    assert (first["kind"], first["amount"], first["balance_after"], first["reason"]) == (
        "credit", "100.00", "100.00", "welcome bonus")
    credit(admin, USER, 20.5)  # a JSON number, parsed without a float
    assert balance(clean_db, USER) == Decimal("120.50")

    wallet = owner.get(f"/api/v1/wallets/{USER}").json()
    assert (wallet["balance"], wallet["currency"]) == ("120.50", "CNY")
    assert wallet["updated_at"] is not None
    ledger = owner.get(f"/api/v1/wallets/{USER}/ledger").json()
    assert ledger["total"] == 2 and ledger["page"] == 1
    assert [(e["amount"], e["balance_after"]) for e in ledger["items"]] == [
        ("20.50", "120.50"), ("100.00", "100.00")]  # newest first
    assert set(ledger["items"][0]) == {"id", "user_id", "amount", "balance_after", "kind",
                                       "payment_id", "refund_id", "reason", "created_at"}
    second_page = owner.get(f"/api/v1/wallets/{USER}/ledger?page=2&page_size=1").json()
    assert [e["amount"] for e in second_page["items"]] == ["100.00"]


def test_another_users_wallet_is_404_like_one_that_does_not_exist(admin, owner, api,
                                                                  make_user_key,
                                                                  clean_db):
    credit(admin, USER, "10.00")
    stranger = api.as_key(make_user_key(8))
    for path in (f"/api/v1/wallets/{USER}", f"/api/v1/wallets/{USER}/ledger",
                 "/api/v1/wallets/999999"):
        response = stranger.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "wallet_not_found"
    assert admin.get("/api/v1/wallets/999999").status_code == 404  # nobody by that id


@pytest.mark.parametrize("amount", ["0", "0.00", "-5.00", "1.005", "abc", "", None, True,
                                    "NaN", "Infinity", [1], {"a": 1},
                                    "1000000000000.00"])
def test_bad_amounts_are_400_and_write_nothing(admin, owner, clean_db, amount):
    before = counts(clean_db)
    response = admin.post(f"/api/v1/wallets/{USER}/credits",
                          json={"amount": amount, "reason": "x"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_amount"
    assert response.json()["detail"]
    assert counts(clean_db) == before


@pytest.mark.parametrize("body", [{"amount": "5.00"}, {"amount": "5.00", "reason": ""},
                                  {"amount": "5.00", "reason": 5},
                                  {"amount": "5.00", "reason": "x" * 501}])
def test_a_credit_needs_a_reason(admin, owner, clean_db, body):
    response = admin.post(f"/api/v1/wallets/{USER}/credits", json=body)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("invalid_field", "reason")
    assert counts(clean_db)["entries"] == 0


def test_crediting_an_unknown_user_is_404_and_writes_nothing(admin, clean_db):
    response = admin.post("/api/v1/wallets/424242/credits",
                          json={"amount": "5.00", "reason": "x"})
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_not_found"
    assert counts(clean_db)["wallets"] == counts(clean_db)["entries"] == 0


def test_a_user_cannot_credit_themselves(owner, api, clean_db):
    response = owner.post(f"/api/v1/wallets/{USER}/credits",
                          json={"amount": "5.00", "reason": "free money"})
    assert response.status_code == 403
    assert response.json()["code"] == "admin_only"
    assert counts(clean_db)["entries"] == 0


def test_an_admin_key_of_a_user_cannot_credit_that_users_wallet(api, clean_db, owner):
    from services.api_keys import create_api_key

    own_admin = api.as_key(create_api_key(clean_db.uow(), "admin", user_id=USER))
    response = own_admin.post(f"/api/v1/wallets/{USER}/credits",
                              json={"amount": "5.00", "reason": "free money"})
    assert response.status_code == 403
    assert response.json()["code"] == "self_credit_not_allowed"
    assert counts(clean_db)["entries"] == 0
    assert own_admin.post("/api/v1/wallets/8/credits", json={"amount": "5.00", "reason": "x"}
                          ).status_code == 404  # user 8 is unknown: no key, no order


def test_a_credit_with_an_idempotency_key_is_written_once(admin, owner, clean_db):
    headers = {"Idempotency-Key": "credit-once"}
    body = {"amount": "30.00", "reason": "goodwill"}
    first = admin.post(f"/api/v1/wallets/{USER}/credits", json=body, headers=headers)
    again = admin.post(f"/api/v1/wallets/{USER}/credits", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert entries(clean_db, USER) == [("credit", Decimal("30.00"), Decimal("30.00"))]
    other = admin.post(f"/api/v1/wallets/{USER}/credits", json={**body, "amount": "31.00"},
                       headers=headers)
    assert other.status_code == 422
    assert balance(clean_db, USER) == Decimal("30.00")


def test_the_ledger_is_append_only_in_the_database(admin, owner, clean_db):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    credit(admin, USER, "10.00")
    for statement in ("UPDATE wallet_entries SET amount = 1000",
                      "DELETE FROM wallet_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            with clean_db.uow() as uow:
                uow.session.execute(text(statement))
    assert entries(clean_db, USER) == [("credit", Decimal("10.00"), Decimal("10.00"))]


def test_a_negative_balance_is_refused_by_the_database(admin, owner, clean_db):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    credit(admin, USER, "10.00")
    with pytest.raises(IntegrityError, match="balance_not_negative"):
        with clean_db.uow() as uow:
            uow.session.execute(text("UPDATE wallets SET balance = -0.01"))
    assert balance(clean_db, USER) == Decimal("10.00")


def test_malformed_pages_and_ids_beyond_bigint(admin, owner, clean_db):
    for query in ("page=0", "page=x", "page_size=101", "page_size=-1"):
        response = owner.get(f"/api/v1/wallets/{USER}/ledger?{query}")
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid_field"
    for path in ("/api/v1/wallets/99999999999999999999",
                 "/api/v1/wallets/99999999999999999999/ledger"):
        assert admin.get(path).status_code == 404
    response = admin.post("/api/v1/wallets/99999999999999999999/credits",
                          json={"amount": "1.00", "reason": "x"})
    assert (response.status_code, response.json()["code"]) == (404, "wallet_not_found")
    assert counts(clean_db)["wallets"] == 0
