"""The append-only audit trail (payment_events), written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from domain.models import Base, PaymentEvent

# Built once, on the table rather than the mapped class: it runs in every settlement, and
# the ORM's bulk-insert path costs several times the Core insert's Python time here.
_INSERT_EVENT = insert(Base.metadata.tables[PaymentEvent.__tablename__])


def record_event(session: Session, event: str, *, payment_id: int | None, actor: str,
                 **detail: Any) -> None:
    session.execute(_INSERT_EVENT, {"payment_id": payment_id, "event": event, "actor": actor,
                                    "detail": jsonable(detail)})


def jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    """Decimals and datetimes as strings, so the JSONB column never sees a float."""
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if value is None or isinstance(value, str | int | bool | list | dict):
            out[key] = value
        else:
            out[key] = str(value) if not hasattr(value, "isoformat") else value.isoformat()
    return out
