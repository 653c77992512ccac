"""API keys for operators (issue #18): `payments keys list` and `payments keys revoke`
run as real subprocesses against the test servers; a revoked key is refused by the live
app on its very next request; last_used_at is kept without a write per request."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, text, update

from domain.models import ApiKey, PaymentEvent
from services.api_keys import LAST_USED_GRANULARITY_SECONDS, hash_key

PAYMENTS = str(Path(sys.executable).parent / "payments")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYMENTS, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def create_key(env: dict[str, str], *args: str) -> str:
    result = run_cli(env, "keys", "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def key_id(res, key: str) -> int:
    with res.uow() as uow:
        return int(uow.session.execute(
            select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).scalar_one())


def stored(res, key_id: int):
    """The row as stored, with xmin: the id of the transaction that wrote this version
    of it, so a test can tell whether a request wrote the row at all."""
    with res.uow() as uow:
        return uow.session.execute(
            text("SELECT last_used_at, revoked_at, xmin::text AS version FROM api_keys "
                 "WHERE id = :id"), {"id": key_id}).one()


def test_keys_list_shows_every_key_but_never_a_secret(stack_env, clean_db):
    admin = create_key(stack_env, "--role", "admin", "--name", "ops")
    user = create_key(stack_env, "--role", "user", "--user-id", "7", "--name", "shop-frontend")

    listed = run_cli(stack_env, "keys", "list", "--json")
    table = run_cli(stack_env, "keys", "list")

    assert listed.returncode == 0 and table.returncode == 0, listed.stderr + table.stderr
    keys = json.loads(listed.stdout)
    assert [(k["id"], k["name"], k["role"], k["user_id"]) for k in keys] == [
        (key_id(clean_db, admin), "ops", "admin", None),
        (key_id(clean_db, user), "shop-frontend", "user", 7)]
    assert set(keys[0]) == {"id", "name", "role", "user_id", "prefix", "created_at",
                            "last_used_at", "revoked_at"}
    assert keys[0]["prefix"] == admin[:12] and keys[0]["revoked_at"] is None
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["id", "name", "role", "user_id", "prefix", "created_at",
                              "last_used_at", "revoked_at"]
    assert len(rows) == 2 and "shop-frontend" in rows[1]
    for output in (listed.stdout, table.stdout):
        for secret in (admin, user, hash_key(admin), hash_key(user)):
            assert secret not in output


def test_a_revoked_key_is_refused_on_its_next_request(api, stack_env, clean_db):
    key = create_key(stack_env, "--role", "admin", "--name", "leaked")
    other = create_key(stack_env, "--role", "admin", "--name", "kept")
    client = api.as_key(key)
    assert client.get("/api/v1/payment-methods").status_code == 200  # and looked up again
    the_id = key_id(clean_db, key)

    revoked = run_cli(stack_env, "keys", "revoke", str(the_id))

    assert revoked.returncode == 0, revoked.stderr
    assert "revoked at" in revoked.stdout
    refused = client.get("/api/v1/payment-methods")
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_api_key")
    assert client.post("/api/v1/orders", json={"total_amount": "1.00", "user_id": 1}
                       ).status_code == 401
    assert api.as_key(other).get("/api/v1/payment-methods").status_code == 200
    [listed] = [k for k in json.loads(run_cli(stack_env, "keys", "list", "--json").stdout)
                if k["id"] == the_id]
    assert listed["revoked_at"] is not None
    active = json.loads(run_cli(stack_env, "keys", "list", "--active", "--json").stdout)
    assert [k["name"] for k in active] == ["kept"]
    with clean_db.uow() as uow:
        [audit] = uow.session.execute(select(PaymentEvent.actor, PaymentEvent.detail).where(
            PaymentEvent.event == "api_key_revoked")).all()
    assert audit.actor == "cli" and audit.detail["key_id"] == the_id

    first_revoked_at = stored(clean_db, the_id).revoked_at
    again = run_cli(stack_env, "keys", "revoke", str(the_id))
    assert again.returncode == 0 and "already revoked" in again.stdout
    assert stored(clean_db, the_id).revoked_at == first_revoked_at


def test_revoking_an_unknown_key_is_a_clear_error(stack_env, clean_db):
    result = run_cli(stack_env, "keys", "revoke", "999999999")
    assert result.returncode == 2
    assert "No API key with id 999999999" in result.stderr
    assert run_cli(stack_env, "keys", "revoke", "abc").returncode == 2  # argparse: an int


def test_last_used_at_is_written_once_per_period_not_per_request(api, stack_env, clean_db):
    key = create_key(stack_env, "--role", "admin")
    the_id = key_id(clean_db, key)
    client = api.as_key(key)
    assert stored(clean_db, the_id).last_used_at is None

    assert client.get("/api/v1/payment-methods").status_code == 200
    first = stored(clean_db, the_id)
    assert isinstance(first.last_used_at, datetime)

    for _ in range(5):
        assert client.get("/api/v1/payment-methods").status_code == 200
    # Not one new row version: the requests inside the period wrote nothing.
    assert stored(clean_db, the_id) == first

    # Once the stored value is older than the period, the next request refreshes it.
    with clean_db.uow() as uow:
        uow.session.execute(update(ApiKey).where(ApiKey.id == the_id).values(
            last_used_at=text(f"now() - interval '{LAST_USED_GRANULARITY_SECONDS + 60} "
                              "seconds'")))
        uow.commit()
    aged = stored(clean_db, the_id)
    assert client.get("/api/v1/payment-methods").status_code == 200
    refreshed = stored(clean_db, the_id)
    assert refreshed.last_used_at > aged.last_used_at
    assert refreshed.last_used_at >= first.last_used_at


def test_a_refused_key_leaves_last_used_at_alone(api, stack_env, clean_db):
    key = create_key(stack_env, "--role", "admin")
    the_id = key_id(clean_db, key)
    assert run_cli(stack_env, "keys", "revoke", str(the_id)).returncode == 0
    before = stored(clean_db, the_id)

    assert api.as_key(key).get("/api/v1/payment-methods").status_code == 401

    assert stored(clean_db, the_id) == before and before.last_used_at is None
