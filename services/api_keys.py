"""API keys: created once (the key is shown only then), looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from adapters.db import UnitOfWork
from domain.errors import InvalidInput
from domain.models import ApiKey

ROLES = ("admin", "user")
# Built once: it runs on every authenticated request.
_LOOKUP = (select(ApiKey.id, ApiKey.role, ApiKey.user_id)
           .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)))
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


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


def authenticate(uow: UnitOfWork, key: str) -> Principal | None:
    """The key's principal, or None for an unknown or revoked key. Read afresh on every
    call (a revocation holds from the next request), as one indexed SELECT in autocommit:
    no BEGIN and ROLLBACK around it, which cost more than the lookup itself (B5)."""
    with uow:
        row = uow.session.connection(execution_options=_AUTOCOMMIT).execute(
            _LOOKUP, {"key_hash": hash_key(key)}).first()
    if row is None:
        return None
    return Principal(key_id=row.id, role=row.role, user_id=row.user_id)
