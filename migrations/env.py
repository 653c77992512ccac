"""Alembic environment: the URL comes from the caller (adapters.migrate) or Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import domain.reconciliation_models  # noqa: F401 - the reconciliation runs and items
import domain.wallet_models  # noqa: F401 - the wallet's tables, on the same metadata
import domain.webhook_models  # noqa: F401 - the webhooks' and events' tables
import standins.models  # noqa: F401 - the doubles' tables are on the same metadata
import standins.sandbox.models  # noqa: F401 - its tables are on the same metadata
from domain.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from config import Settings

    return Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
