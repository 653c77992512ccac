"""Reading request bodies, strictly: JSON objects only (`application/json`), known
fields only, numbers as Decimal, never float, and a bounded size."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flask import Flask, request

from domain.errors import DomainError, InvalidInput

# Every body under these prefixes is at most this long (a callback has its own limit,
# in its view). Documented in the README and the OpenAPI document.
MAX_BODY_BYTES = 64 * 1024
STRICT_PREFIXES = ("/api/", "/checkout/")
JSON_MEDIA_TYPE = "application/json"


class UnsupportedMediaType(DomainError):
    kind = "unsupported_media_type"
    default_code = "unsupported_media_type"


class BodyTooLarge(DomainError):
    kind = "too_large"
    default_code = "body_too_large"


def install_body_limit(app: Flask) -> None:
    """Refuse an oversized body before anything reads it (auth, idempotency, the view)."""

    @app.before_request
    def refuse_oversized_body() -> None:
        if not request.path.startswith(STRICT_PREFIXES):
            return
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise _too_large()
        if request.content_length is None and request.method == "POST":
            # A chunked body says no length. Werkzeug stops reading at the limit without
            # an error (the body would be cut short), so read one byte past it and see.
            request.max_content_length = MAX_BODY_BYTES + 1
            if len(request.get_data(cache=True)) > MAX_BODY_BYTES:
                raise _too_large()


def _too_large() -> BodyTooLarge:
    return BodyTooLarge(f"A request body may be at most {MAX_BODY_BYTES} bytes",
                        max_bytes=MAX_BODY_BYTES)


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not allowed in JSON", code="malformed_json")


def parse_json_object(raw: bytes, allow_empty: bool = True) -> dict[str, Any]:
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidInput("request body must be a JSON object", code="malformed_json")
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput("request body is not valid JSON", code="malformed_json") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", code="malformed_json")
    return body


def json_body(fields: Iterable[str] | None = None, allow_empty: bool = True) -> dict[str, Any]:
    """The body as a JSON object with no field outside `fields` (400 `unknown_field`,
    as Stripe answers), sent as application/json (else 415). An empty body is `{}`.

    fields=None checks no names: only the sandbox, a stand-in for an outside system
    with rules of its own, reads bodies that way.
    """
    raw = request.get_data(cache=True)
    if raw.strip() and request.mimetype != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Send the body as {JSON_MEDIA_TYPE} (Content-Type: {JSON_MEDIA_TYPE}), not "
            f"{request.mimetype or 'without a Content-Type'}")
    body = parse_json_object(raw, allow_empty=allow_empty)
    if fields is None:
        return body
    allowed = sorted(set(fields))
    unknown = [name for name in body if name not in allowed]
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no fields"
        raise InvalidInput(f"Unknown field {unknown[0][:64]!r}: {takes}", code="unknown_field",
                           field=unknown[0][:64], allowed_fields=allowed)
    return body
