"""Stripe-style idempotency keys: claim a key, run the request once, remember its answer.

One row per (API key, Idempotency-Key). A request first *claims* its key in a
transaction of its own that is committed at once, so a second request with the same
key sees the claim even while the first is still running. The unique constraint on
(api_key_id, key) is what makes the claim exclusive: INSERT ... ON CONFLICT DO NOTHING
lets exactly one of two racing requests win; the loser locks the winner's row and
reads what it holds. After the first request has answered, its status and JSON body
are stored (the claim is *completed*; the body as its exact text, a JSON string in the
JSONB column, so that a replay is byte for byte the first answer) or, when it failed on
our side, the claim is released so that the client can retry with the same key.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from domain.errors import InvalidInput
from domain.models import IdempotencyKey

log = logging.getLogger(__name__)

KEY_MAX_LENGTH = 255
# Visible ASCII only (letters, digits, punctuation; no spaces): UUIDs, ULIDs and
# "order-42:pay" fit; nothing a log line, a header or a terminal could misread.
KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{KEY_MAX_LENGTH}}}")
# Expired rows (they hold stored answers, checkout links included) are deleted in
# batches of this many by maintenance.purge_idempotency_keys.
PURGE_BATCH_SIZE = 5000
# A stored answer is replayed for this long; after it the key may be used afresh.
KEY_TTL = timedelta(hours=24)
# A claim still unanswered after this is abandoned: its request died, or its answer could
# not be stored. A retry with the key then runs (again). Far longer than any request
# runs (gunicorn's worker timeout is 30 s), so a request still running is never doubled.
CLAIM_TIMEOUT = timedelta(minutes=5)
# The claim itself, built once: every POST with the header runs it.
_CLAIM = (insert(IdempotencyKey)
          .values(api_key_id=bindparam("api_key_id"), key=bindparam("key"),
                  request_hash=bindparam("request_hash"))
          .on_conflict_do_nothing(index_elements=["api_key_id", "key"])
          .returning(IdempotencyKey.id))
# The holder's row, locked, with what the claim decision needs.
_HELD = (select(IdempotencyKey.id, IdempotencyKey.request_hash,
                IdempotencyKey.response_status, IdempotencyKey.response_body,
                IdempotencyKey.completed_at,
                (IdempotencyKey.created_at < func.now() - KEY_TTL).label("expired"),
                (IdempotencyKey.completed_at.is_(None)
                 & (IdempotencyKey.created_at < func.now() - CLAIM_TIMEOUT)).label("abandoned"))
         .where(IdempotencyKey.api_key_id == bindparam("api_key_id"),
                IdempotencyKey.key == bindparam("key"))
         .with_for_update())
_COMPLETE = (update(IdempotencyKey)
             .where(IdempotencyKey.id == bindparam("claim_id"),
                    IdempotencyKey.completed_at.is_(None))
             .values(response_status=bindparam("status"), response_body=bindparam("body"),
                     completed_at=func.now())
             .execution_options(synchronize_session=False))
_RECORD = text(f"""
    INSERT INTO idempotency_keys AS held (api_key_id, key, request_hash, response_status,
                                          response_body, completed_at)
    VALUES (:api_key_id, :key, :request_hash, :status, to_jsonb(CAST(:body AS text)), now())
    ON CONFLICT (api_key_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, response_status = excluded.response_status,
            response_body = excluded.response_body, created_at = now(),
            completed_at = excluded.completed_at
        WHERE held.created_at < now() - interval '{KEY_TTL.total_seconds():.0f} s'
           OR (held.completed_at IS NULL
               AND held.created_at < now() - interval '{CLAIM_TIMEOUT.total_seconds():.0f} s')
    RETURNING held.id
""")
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
# A claim can disappear between our failed INSERT and our SELECT (its request failed
# and released it). Trying again a few times settles that; more would mean a bug.
_CLAIM_ATTEMPTS = 5


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"          # ours: run the request, then complete() or release()
    REPLAY = "replay"            # answered before: send the stored response again
    IN_PROGRESS = "in_progress"  # another request with this key is still running
    MISMATCH = "mismatch"        # the key was used for a different request


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    claim_id: int | None = None
    response_status: int | None = None
    response_body: Any = None


def validate_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {KEY_MAX_LENGTH} visible ASCII characters "
            "(letters, digits, punctuation; no spaces)", code="invalid_idempotency_key")
    return key


def purge_expired_keys(new_uow: Callable[[], UnitOfWork], *,
                       batch_size: int = PURGE_BATCH_SIZE,
                       deadline: float | None = None) -> int:
    """Delete claims older than KEY_TTL (they can no longer be replayed, and their stored
    answers hold checkout tokens), a batch per transaction; returns how many."""
    deleted = 0
    while deadline is None or time.monotonic() < deadline:
        due = (select(IdempotencyKey.id)
               .where(IdempotencyKey.created_at < func.now() - KEY_TTL)
               .limit(batch_size).with_for_update(skip_locked=True).scalar_subquery())
        with new_uow() as uow:
            count = len(uow.session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.id.in_(due))
                .returning(IdempotencyKey.id)).all())
            uow.commit()
        deleted += count
        if count < batch_size:
            break
    return deleted


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of what makes two requests "the same": method, path and the raw body.

    The parts are length-prefixed so that no two different requests can produce the
    same byte stream (e.g. a path ending where a body begins).
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def claim_key(uow: UnitOfWork, api_key_id: int, key: str, request_hash: str) -> Claim:
    """Claim `key` for this request, or say why not. Commits its own transaction.

    The usual case, a key never seen, is one INSERT in autocommit: committed the moment
    it returns, with no BEGIN and COMMIT round trips around it. Only a key already held
    goes on to a transaction (claim_in), which reads and may take over the holder's row."""
    with uow:
        claim_id = uow.session.connection(execution_options=_AUTOCOMMIT).execute(
            _CLAIM, {"api_key_id": api_key_id, "key": key, "request_hash": request_hash}
        ).scalar_one_or_none()
    if claim_id is not None:
        return Claim(ClaimOutcome.CLAIMED, claim_id=claim_id)
    for _ in range(_CLAIM_ATTEMPTS):
        with uow:
            claim = claim_in(uow.session, api_key_id, key, request_hash)
            if claim is None:
                continue  # released between our INSERT and SELECT: try to claim again
            if claim.outcome is ClaimOutcome.CLAIMED:
                uow.commit()
            return claim
    raise RuntimeError(f"could not claim idempotency key after {_CLAIM_ATTEMPTS} attempts")


def claim_in(session: Session, api_key_id: int, key: str, request_hash: str) -> Claim | None:
    """Claim `key` inside the caller's transaction, or say why not; commits nothing.

    A view that runs in one transaction (POST /payments) claims here first: its claim,
    its work and its answer (store_answer) then commit together, and a second request
    with the key waits on the uncommitted claim (the unique index) until the first has
    committed, and replays it, or rolled back, and claims it. None: the holder's row
    vanished between our INSERT and SELECT (released); the caller may try again."""
    params = {"api_key_id": api_key_id, "key": key, "request_hash": request_hash}
    claim_id = session.execute(_CLAIM, params).scalar_one_or_none()
    if claim_id is not None:
        return Claim(ClaimOutcome.CLAIMED, claim_id=claim_id)
    # Someone holds the key. Lock their row: if they are replacing an expired claim
    # right now we wait for them and then read what they wrote.
    existing = session.execute(_HELD, params).first()
    if existing is None:
        return None
    if existing.expired or existing.abandoned:
        # Older than the TTL, or a claim nobody will answer: as if it did not exist.
        # Taken over in place, under the row lock, so two requests reusing an old key
        # cannot both win.
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == existing.id)
            .values(request_hash=request_hash, response_status=None,
                    response_body=None, created_at=func.now(), completed_at=None)
            .execution_options(synchronize_session=False))
        return Claim(ClaimOutcome.CLAIMED, claim_id=existing.id)
    if existing.request_hash != request_hash:
        return Claim(ClaimOutcome.MISMATCH)
    if existing.completed_at is None:
        return Claim(ClaimOutcome.IN_PROGRESS)
    return Claim(ClaimOutcome.REPLAY, response_status=existing.response_status,
                 response_body=existing.response_body)


def store_answer(session: Session, claim_id: int, status: int, body: str) -> None:
    """Complete the claim with its answer, in the caller's transaction (see claim_in)."""
    session.execute(_COMPLETE, {"claim_id": claim_id, "status": status, "body": body})


def record_answer(uow: UnitOfWork, api_key_id: int, key: str, request_hash: str,
                  status: int, body: str) -> bool:
    """Claim and complete in one autocommit statement: the answer of a view that claims
    in its own transaction (claim_in) and failed (a 4xx), so that its claim was rolled
    back with everything else. A key held meanwhile by another request stays theirs;
    an expired or abandoned one is taken over. True when stored."""
    with uow:
        stored = uow.session.connection(execution_options=_AUTOCOMMIT).execute(
            _RECORD, {"api_key_id": api_key_id, "key": key, "request_hash": request_hash,
                      "status": status, "body": body}).scalar_one_or_none()
    return stored is not None


def complete_claim(uow: UnitOfWork, claim_id: int, status: int, body: str) -> None:
    """Remember the answer (its exact text) so that a retry with the same key gets it
    again. One statement in autocommit (atomic on its own: no BEGIN/COMMIT round trips)."""
    with uow:
        uow.session.connection(execution_options=_AUTOCOMMIT).execute(
            _COMPLETE, {"claim_id": claim_id, "status": status, "body": body})


def release_claim(uow: UnitOfWork, claim_id: int) -> None:
    """Forget an unfinished claim (the request failed on our side): the client may retry.
    One statement in autocommit, like complete_claim."""
    with uow:
        uow.session.connection(execution_options=_AUTOCOMMIT).execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.id == claim_id, IdempotencyKey.completed_at.is_(None)))
