"""The `payments` console script, run as a real subprocess against the test servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from domain.models import ApiKey
from services.api_keys import hash_key

PAYMENTS = str(Path(sys.executable).parent / "payments")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYMENTS, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_keys_create_prints_a_working_key_and_stores_only_its_hash(api, stack_env, clean_db):
    result = run_cli(stack_env, "keys", "create", "--role", "admin", "--name", "ops")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("pk_admin_") and " " not in key

    with clean_db.uow() as uow:
        rows = uow.session.execute(select(ApiKey.key_hash, ApiKey.prefix, ApiKey.name)).all()
    assert [(r.key_hash, r.name) for r in rows] == [(hash_key(key), "ops")]
    assert all(key not in value for row in rows for value in row if value)

    assert api.as_key(key).get("/api/v1/payment-methods").status_code == 200
    assert api.as_key(key + "x").get("/api/v1/payment-methods").status_code == 401


def test_user_keys_need_a_user_id(stack_env, clean_db):
    result = run_cli(stack_env, "keys", "create", "--role", "user")
    assert result.returncode == 2
    assert "user id" in result.stderr


def test_db_upgrade_is_idempotent_at_head(stack_env):
    result = run_cli(stack_env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "latest migration" in result.stdout
