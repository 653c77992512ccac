"""The migrations and the mapped models describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import domain.reconciliation_models  # noqa: F401 - the reconciliation runs and items
import domain.wallet_models  # noqa: F401 - the wallet's tables, on the same metadata
import domain.webhook_models  # noqa: F401 - the webhooks' and events' tables
import standins.models  # noqa: F401 - the doubles' tables, on the same metadata
import standins.sandbox.models  # noqa: F401 - the sandbox's tables, on the same metadata
from domain.models import Base


def test_models_match_the_migrated_schema(resources):
    with resources.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_one_active_payment_per_order_is_a_database_rule(resources):
    indexes = {ix["name"]: ix for ix in inspect(resources.db.engine).get_indexes("payments")}
    active = indexes["uq_payments_one_active_per_order"]
    assert active["unique"] and active["column_names"] == ["order_id"]
    assert "init" in active["dialect_options"]["postgresql_where"]
