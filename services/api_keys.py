"""API keys: created once (the key is shown only then), looked up by hash, listed and
revoked by operators (`payments keys list|revoke`)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, text, update

from adapters.db import UnitOfWork, autocommit_on
from adapters.prepared import Prepared, fetch_one
from domain.errors import InvalidInput, NotFound
from domain.models import ApiKey
from services.audit import record_event

ROLES = ("admin", "user")


@dataclass(frozen=True)
class Principal:
    key_id: int
    role: str
    user_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        return "admin" if self.is_admin else f"user:{self.user_id}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(uow: UnitOfWork, role: str, user_id: int | None = None,
                   name: str | None = None) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    if role == "user" and user_id is None:
        raise InvalidInput("a user key needs a user id", code="user_id_required")
    if user_id is not None and user_id <= 0:
        raise InvalidInput("user id must be positive", code="invalid_user_id")
    key = f"pk_{role}_{secrets.token_urlsafe(32)}"
    with uow:
        uow.session.add(ApiKey(key_hash=hash_key(key), prefix=key[:12], role=role,
                               user_id=user_id, name=name))
        uow.commit()
    return key


# last_used_at answers "is this key still in use?", which needs minutes, not
# milliseconds. Writing it on every request would turn every authenticated read into a
# write (WAL, a row version per request, lock contention on one row for a busy key), so
# the lookup reads whether the stored value is older than this (by the database's
# clock) and only then writes, with the same condition in the UPDATE: however many
# requests race, a key is written at most about once per period. Kept in PostgreSQL
# rather than Redis: no flush job to lose on a crash, and `keys list` reads one table.
LAST_USED_GRANULARITY_SECONDS = 300
# SQL, once for both statements: the lookup's is a prepared statement run by psycopg
# itself (adapters/prepared.py), cheaper in Python than through SQLAlchemy on every
# authenticated request (B5).
_STALE = (f"(last_used_at IS NULL OR last_used_at < now() - interval "
          f"'{LAST_USED_GRANULARITY_SECONDS} seconds')")


class _KeyRow(NamedTuple):
    id: int
    role: str
    user_id: int | None
    stale: bool  # last_used_at is due to be written


_LOOKUP = Prepared(f"""
    SELECT api_keys.id, api_keys.role, api_keys.user_id, {_STALE} FROM api_keys
    WHERE key_hash = %(key_hash)s AND revoked_at IS NULL
""", _KeyRow)
_TOUCH = (update(ApiKey).where(ApiKey.id == bindparam("key_id"), text(_STALE))
          .values(last_used_at=func.now()).execution_options(synchronize_session=False))


def authenticate(uow: UnitOfWork, key: str) -> Principal | None:
    """The key's principal, or None for a key we never issued or one revoked: looked up
    in the database on every request (no cache), so a revocation holds at once. In
    autocommit on a plain connection (no Session): one indexed SELECT with no BEGIN and
    ROLLBACK around it, which cost more than the lookup itself (B5); the rare
    last_used_at write is one statement, atomic on its own."""
    with uow.held_connection() as conn:
        return authenticate_on(conn, key)


def authenticate_on(conn: Connection, key: str) -> Principal | None:
    """authenticate, on a connection the caller holds (UnitOfWork.held_connection) and
    may then hand to a unit of work (UnitOfWork.on): the lookup and its last_used_at
    write run in autocommit as above, durable before any transaction begins there."""
    with autocommit_on(conn):
        row = fetch_one(conn, _LOOKUP, {"key_hash": hash_key(key)})
        if row is not None and row.stale:
            conn.execute(_TOUCH, {"key_id": row.id})
            conn.commit()  # ends the Connection's autobegun transaction; nothing is sent
    if row is None:
        return None
    return Principal(key_id=row.id, role=row.role, user_id=row.user_id)


# --- operators: `payments keys list|revoke` ------------------------------------------

def _key_view(key: ApiKey) -> dict[str, Any]:
    """What an operator may see of a key: never its hash, nor (never stored) the key."""
    return {"id": key.id, "name": key.name, "role": key.role, "user_id": key.user_id,
            "prefix": key.prefix, "created_at": key.created_at,
            "last_used_at": key.last_used_at, "revoked_at": key.revoked_at}


def list_api_keys(uow: UnitOfWork, *, include_revoked: bool = True) -> list[dict[str, Any]]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with uow:
        return [_key_view(k) for k in uow.session.execute(query).scalars()]


def revoke_api_key(uow: UnitOfWork, key_id: int, *, actor: str) -> tuple[dict[str, Any], bool]:
    """(the key, True) once revoked now; (the key, False) when it already was (its
    revoked_at is kept). NotFound for an id we never issued. The next request with the
    key is refused: authenticate reads revoked_at every time."""
    with uow:
        revoked = uow.session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now()).returning(ApiKey.id)
            .execution_options(synchronize_session=False)).scalar_one_or_none()
        key = uow.session.execute(
            select(ApiKey).where(ApiKey.id == key_id)
            .execution_options(populate_existing=True)).scalar_one_or_none()
        if key is None:
            raise NotFound(f"No API key with id {key_id}", code="api_key_not_found")
        if revoked is not None:
            record_event(uow.session, "api_key_revoked", payment_id=None, actor=actor,
                         key_id=key.id, role=key.role, user_id=key.user_id,
                         prefix=key.prefix)
        view = _key_view(key)
        uow.commit()
    return view, revoked is not None
