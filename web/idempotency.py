"""The Idempotency-Key header, for every authenticated POST under the API prefix.

Installed once on the app (not per view): a before_request hook claims the key or
answers for the view (replay / 409 / 422), an after_request hook stores the view's
answer, and a teardown hook releases a claim nobody settled. The rules themselves
live in services/idempotency.py.

A view marked `@claims_in_transaction` (POST /payments) is not claimed for: it gets the
key as an `InTransaction` (`keyed_request()`) and claims it, does its work and stores
its answer in ONE transaction, so a crash leaves neither a payment without its answer
nor a claim without its payment, and one commit does what three did. When it fails
with a 4xx its transaction (the claim included) is rolled back, and the after_request
hook stores that answer on its own (services.idempotency.record_answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from domain.errors import Conflict, Unprocessable
from services.idempotency import (
    Claim,
    ClaimOutcome,
    claim_in,
    claim_key,
    complete_claim,
    record_answer,
    release_claim,
    request_fingerprint,
    store_answer,
    validate_key,
)
from web.auth import request_principal, request_uow
from web.deps import resources

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_CLAIM = "idempotency_claim_id"  # name of the g attribute holding this request's claim
_KEYED = "idempotency_in_transaction"  # g: the InTransaction of a view that claims itself
_IN_TRANSACTION = "claims_idempotency_in_transaction"  # the mark on such a view
F = TypeVar("F", bound=Callable[..., Any])


def install_idempotency(app: Flask, api_prefix: str) -> None:
    def claim_before_view() -> Response | None:
        if request.method != "POST" or not request.path.startswith(api_prefix + "/"):
            return None
        return _claim_before_view()

    app.before_request(claim_before_view)
    app.after_request(_settle_after_view)
    app.teardown_request(_release_unsettled)


class StoredAnswer(Exception):
    """Raised inside a view's transaction when its key was answered before: the view's
    wrapper (claims_in_transaction) sends that answer again."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class InTransaction:
    """This request's Idempotency-Key, for a view that claims it in its own transaction:
    `claim(session)` first, `store(session, status, body)` before the commit."""

    def __init__(self, api_key_id: int, key: str, fingerprint: str) -> None:
        self.api_key_id, self.key, self.fingerprint = api_key_id, key, fingerprint
        self.claim_id: int | None = None
        # True once nothing is left for the after_request hook: the answer is in the
        # view's transaction, or the key belongs to another request.
        self.settled = False

    def claim(self, session: Session) -> None:
        """Claim, or raise: StoredAnswer (replay), 422 (another body), 409 (running)."""
        for _ in range(3):
            claim = claim_in(session, self.api_key_id, self.key, self.fingerprint)
            if claim is not None:
                break
        else:
            raise RuntimeError("could not claim idempotency key")
        if claim.outcome is ClaimOutcome.CLAIMED:
            self.claim_id = claim.claim_id
            return
        self.settled = True  # someone else's key: this request stores nothing
        _refuse(claim)

    def store(self, session: Session, status: int, body: str) -> None:
        assert self.claim_id is not None, "store() before claim()"
        store_answer(session, self.claim_id, status, body)

    def committed(self) -> None:
        self.settled = True


def claims_in_transaction(view: F) -> F:
    """Mark a view that claims its Idempotency-Key itself (see InTransaction); place it
    under @require_key (functools.wraps carries the mark outwards)."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except StoredAnswer as stored:
            return _replay(stored.status, stored.body)
    setattr(wrapper, _IN_TRANSACTION, True)
    return wrapper  # type: ignore[return-value]


def keyed_request() -> InTransaction | None:
    """In a view marked claims_in_transaction: its key, or None without the header."""
    keyed: InTransaction | None = g.get(_KEYED)
    return keyed


def _claim_before_view() -> Response | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or request.routing_exception is not None:
        return None  # no header, or no such route (404/405): nothing will run
    principal = request_principal()
    if principal is None:
        return None  # the view answers 401; an anonymous request has no key scope
    api_key_id = principal.key_id
    validate_key(key)
    fingerprint = request_fingerprint(request.method, _path_with_query(),
                                      request.get_data(cache=True))
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, _IN_TRANSACTION, False):
        setattr(g, _KEYED, InTransaction(api_key_id, key, fingerprint))
        return None
    claim = claim_key(resources().uow(), api_key_id, key, fingerprint)
    if claim.outcome is ClaimOutcome.CLAIMED:
        setattr(g, _CLAIM, claim.claim_id)
        return None
    return _refuse(claim)


def _refuse(claim: Claim) -> Response:
    """The answer for a key another request holds: 422, 409, or its stored answer."""
    if claim.outcome is ClaimOutcome.MISMATCH:
        raise Unprocessable(
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request", code="idempotency_key_reused")
    if claim.outcome is ClaimOutcome.IN_PROGRESS:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; "
            "retry shortly", code="idempotency_request_in_progress")
    assert claim.response_status is not None
    if g.get(_KEYED) is not None:
        raise StoredAnswer(claim.response_status, claim.response_body)
    return _replay(claim.response_status, claim.response_body)


def _replay(status: int, body: object) -> Response:
    return current_app.response_class(_stored_text(body), status=status,
                                      mimetype="application/json",
                                      headers={REPLAYED_HEADER: "true"})


def _stored_text(body: object) -> str:
    """The stored answer's text. Claims stored before answers were kept as text hold
    the parsed JSON object instead: serialised again (same content, maybe not the
    same bytes)."""
    return body if isinstance(body, str) else current_app.json.dumps(body)


def _settle_after_view(response: Response) -> Response:
    keyed: InTransaction | None = g.pop(_KEYED, None)
    if keyed is not None and not keyed.settled:
        _record_failed_view(keyed, response)
    claim_id: int | None = g.pop(_CLAIM, None)
    if claim_id is None:
        return response
    uow = resources().uow()
    try:
        if _worth_replaying(response):
            # The exact text, not the parsed JSON: a replay is the same bytes (JSONB
            # would reorder the keys of an object).
            complete_claim(uow, claim_id, response.status_code,
                           response.get_data(as_text=True))
        else:
            release_claim(uow, claim_id)
    except Exception:
        # The view's answer is real and is sent as is. The claim stays "in progress"
        # (a retry gets 409, not a second execution) until it is abandoned
        # (services.idempotency.CLAIM_TIMEOUT); a retry after that runs again.
        log.exception("could not settle idempotency claim %s", claim_id)
    return response


def _record_failed_view(keyed: InTransaction, response: Response) -> None:
    """A view that claims in its transaction answered without committing its answer (a
    4xx rolled it back): store this answer now, so that a retry replays it."""
    if not _worth_replaying(response):
        return  # a 5xx or 429: nothing stored, nothing claimed, the client may retry
    try:
        # On the view's connection (its transaction is over): still one checkout.
        record_answer(request_uow(), keyed.api_key_id, keyed.key, keyed.fingerprint,
                      response.status_code, response.get_data(as_text=True))
    except Exception:
        # The answer is sent as is; with nothing stored a retry runs again, and finds
        # what the first run left (nothing: it was rolled back).
        log.exception("could not store the answer for idempotency key of api key %s",
                      keyed.api_key_id)


def _release_unsettled(exc: BaseException | None) -> None:
    """Safety net: a claim still open here was never answered (another hook failed)."""
    claim_id: int | None = g.pop(_CLAIM, None)
    if claim_id is None:
        return
    try:
        release_claim(resources().uow(), claim_id)
    except Exception:
        log.exception("could not release idempotency claim %s", claim_id)


def _worth_replaying(response: Response) -> bool:
    """A final answer: anything below 500 except 429, which asks to be retried later."""
    return response.status_code < 500 and response.status_code != 429 and response.is_json


def _path_with_query() -> str:
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path
