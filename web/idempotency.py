"""The Idempotency-Key header, for every authenticated POST under the API prefix.

Installed once on the app (not per view): a before_request hook claims the key or
answers for the view (replay / 409 / 422), an after_request hook stores the view's
answer, and a teardown hook releases a claim nobody settled. The rules themselves
live in services/idempotency.py.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, request

from domain.errors import Conflict, Unprocessable
from services.idempotency import (
    ClaimOutcome,
    claim_key,
    complete_claim,
    release_claim,
    request_fingerprint,
    validate_key,
)
from web.auth import request_principal
from web.deps import resources

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_CLAIM = "idempotency_claim_id"  # name of the g attribute holding this request's claim


def install_idempotency(app: Flask, api_prefix: str) -> None:
    def claim_before_view() -> Response | None:
        if request.method != "POST" or not request.path.startswith(api_prefix + "/"):
            return None
        return _claim_before_view()

    app.before_request(claim_before_view)
    app.after_request(_settle_after_view)
    app.teardown_request(_release_unsettled)


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
    claim = claim_key(resources().uow(), api_key_id, key, fingerprint)
    if claim.outcome is ClaimOutcome.CLAIMED:
        setattr(g, _CLAIM, claim.claim_id)
        return None
    if claim.outcome is ClaimOutcome.MISMATCH:
        raise Unprocessable(
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request", code="idempotency_key_reused")
    if claim.outcome is ClaimOutcome.IN_PROGRESS:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; "
            "retry shortly", code="idempotency_request_in_progress")
    return current_app.response_class(
        _stored_text(claim.response_body), status=claim.response_status,
        mimetype="application/json", headers={REPLAYED_HEADER: "true"})


def _stored_text(body: object) -> str:
    """The stored answer's text. Claims stored before answers were kept as text hold
    the parsed JSON object instead: serialised again (same content, maybe not the
    same bytes)."""
    return body if isinstance(body, str) else current_app.json.dumps(body)


def _settle_after_view(response: Response) -> Response:
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
