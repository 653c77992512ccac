"""Provider callbacks over HTTP (DESIGN.md §6) and the admin's view of the inbox (§5).

`POST /callbacks/<provider>` sits at the root (providers are configured with a
URL, not an API version) and carries no API key: the signature authenticates.
The view only bounds and reads the body, then hands it to the service. Every answer
to a known provider, refusals included, is in that provider's own format (its
connector's answer_* methods): WeChat Pay retries unless it reads its own success
answer, Alipay unless the body is `success`.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests

from adapters.metrics import CALLBACKS, callback_latency
from adapters.providers.base import CallbackAnswer, CallbackRequest
from domain.errors import DomainError
from services.callbacks import (
    MAX_PAGE_SIZE,
    callback_connector,
    ingest_callback,
    list_callbacks,
    replay_callback,
)
from web.auth import current_principal, require_key
from web.deps import resources
from web.errors import STATUS_BY_KIND, error_response
from web.json_body import json_body
from web.rate_limits import refuse_past_the_limit
from web.routes.params import query_int, query_page

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024

provider_bp = Blueprint("provider_callbacks", __name__)
admin_bp = Blueprint("callbacks_admin", __name__)


@provider_bp.before_request
def _start_clock() -> None:
    g.callback_started = time.perf_counter()


@provider_bp.after_request
def _observe_latency(response: Response) -> Response:
    """Every answer to a configured provider, errors included (an unknown name is not
    labelled: provider names in URLs are not ours to choose)."""
    started = g.get("callback_started")
    provider = (request.view_args or {}).get("provider") or ""
    if started is not None and resources().providers.for_callbacks(provider) is not None:
        callback_latency(provider).observe(time.perf_counter() - started)
    return response


# The real providers' routes are spelled out (their formats differ from the sandbox's,
# and the OpenAPI document lists each); any other name goes to the sandbox's shape.
@provider_bp.post("/callbacks/wechatpay", defaults={"provider": "wechatpay"})
@provider_bp.post("/callbacks/alipay", defaults={"provider": "alipay"})
@provider_bp.post("/callbacks/<provider>")
def receive_callback(provider: str):
    connector = callback_connector(resources(), provider)  # 404 before reading anything
    raw_body = _read_bounded_body(MAX_CALLBACK_BYTES)
    # The refusal limit is counted only when the signature is refused (web/rate_limits.py).
    result = ingest_callback(resources(), connector,
                             CallbackRequest(headers=request.headers, body=raw_body),
                             on_refused=refuse_past_the_limit)
    return _as_response(connector.answer_stored(result.duplicate))


@provider_bp.errorhandler(DomainError)
def refused(exc: DomainError):
    """Not authentic (401) or not understood (400): in the provider's format when the
    provider is known; an unknown one gets our JSON 404."""
    return _refusal(STATUS_BY_KIND[exc.kind], exc.code, exc.detail, dict(exc.extra))


@provider_bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: HTTPException):
    _count_too_large()
    return _refusal(413, "request_entity_too_large", exc.description or "Too large", {})


@provider_bp.errorhandler(TooManyRequests)
def too_many_refusals(exc: HTTPException):
    """Too many refused signatures from this address (web/rate_limits.py)."""
    response = _refusal(429, "too_many_refused_callbacks",
                        "Too many callbacks with a bad signature from this address; "
                        "try again later", {})
    response.headers["Retry-After"] = str(getattr(exc, "retry_after", None) or 60)
    return response


# --- oversized callbacks are counted (issue #15): outcome "too_large" -------------------
def _count_too_large() -> None:
    provider = (request.view_args or {}).get("provider") or ""
    if resources().providers.for_callbacks(provider) is not None:  # names in URLs are
        CALLBACKS.labels(provider, "too_large").inc()                # not ours to label
# --- end of the 413 count -------------------------------------------------------------------


@provider_bp.errorhandler(DBAPIError)
@provider_bp.errorhandler(PoolTimeout)
def storage_unavailable(exc: Exception):
    """Whatever went wrong with the database, the callback is not stored: say so with a
    503 so the provider retries (never a 2xx, and not a 500 that some providers drop)."""
    log.error("callback not stored, database error: %s", exc)
    response = _refusal(503, "database_unavailable",
                        "The callback could not be stored; retry shortly", {})
    response.headers["Retry-After"] = "5"
    return response


def _refusal(status: int, code: str, detail: str, extra: dict[str, object]) -> Response:
    provider = (request.view_args or {}).get("provider", "")
    connector = resources().providers.for_callbacks(provider)
    if connector is None:
        return error_response(status, detail, code, **extra)
    return _as_response(connector.answer_refused(status, code, detail, extra))


def _as_response(answer: CallbackAnswer) -> Response:
    return Response(answer.body, status=answer.status, content_type=answer.content_type)


def _too_large() -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        description=f"A callback body may be at most {MAX_CALLBACK_BYTES} bytes")


def _read_bounded_body(limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes whether or not Content-Length
    says so (a chunked body has none; a lying one is caught by counting)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large()
    if declared is not None:  # the stream stops at the declared length: one read
        return request.stream.read()
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = request.stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large()
    return b"".join(chunks)


@admin_bp.get("/callbacks")
@require_key(admin=True)
def list_stored_callbacks():
    page, page_size = query_page(default_size=50, max_size=MAX_PAGE_SIZE)
    payment_id = query_int("payment_id")
    status = request.args.get("status") or None
    return jsonify(list_callbacks(resources(), status=status, payment_id=payment_id,
                                  page=page, page_size=page_size))


@admin_bp.post("/callbacks/<int:callback_id>/replay")
@require_key(admin=True)
def replay_stored_callback(callback_id: int):
    json_body(())  # takes no fields (strict bodies, issue #15)
    outcome = replay_callback(resources(), callback_id, actor=current_principal().actor)
    return jsonify(outcome), 202
