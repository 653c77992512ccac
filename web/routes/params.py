"""Strict parsing of ids, query parameters and short strings for the API views.

Types are checked here (a view's job); whether a value makes sense for the
domain (a known status, a payable amount) is the services' and domain's job.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import request

from domain.errors import InvalidInput
from domain.ids import MAX_BIGINT, is_int

# The longest free-text reason (cancel, refund, order transition) a request may carry.
REASON_MAX = 500
DIGITS = re.compile(r"[0-9]{1,19}")
# Every listing's page is capped: an OFFSET past this is no listing anyone pages through
# (use the filters), and an unbounded one reaches past BIGINT.
MAX_PAGE = 10_000


def _bad(field: str, sentence: str) -> InvalidInput:
    return InvalidInput(f"{field} {sentence}", code="invalid_field", field=field)


def body_id(body: dict[str, Any], field: str, *, required: bool = True) -> int | None:
    """A JSON integer id: not a string, a fraction, a boolean or out of BIGINT range."""
    value = body.get(field)
    if value is None:
        if required:
            raise _bad(field, "is required")
        return None
    if not is_int(value) or not 0 < value <= MAX_BIGINT:
        raise _bad(field, "must be a positive whole number (a JSON integer)")
    return value


def body_str(body: dict[str, Any], field: str, *, max_len: int,
             required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise _bad(field, "is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _bad(field, f"must be a non-empty string of at most {max_len} characters")
    return value


def query_int(name: str, *, default: int | None = None, minimum: int = 1,
              maximum: int = MAX_BIGINT) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise _bad(name, f"must be a whole number from {minimum} to {maximum}")
    return int(raw)


def query_page(*, default_size: int, max_size: int) -> tuple[int, int]:
    """`page` (1..MAX_PAGE) and `page_size` (1..max_size) of a listing."""
    page = query_int("page", default=1, maximum=MAX_PAGE) or 1
    size = query_int("page_size", default=default_size, maximum=max_size) or default_size
    return page, size


def query_str(name: str, *, max_len: int = 64) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise _bad(name, f"must be at most {max_len} characters")
    return raw


def query_bool(name: str) -> bool | None:
    """`true` or `false` (also 1 / 0); absent or empty: None (no filter)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    value = {"true": True, "1": True, "false": False, "0": False}.get(raw.lower())
    if value is None:
        raise _bad(name, "must be true or false")
    return value


def query_datetime(name: str) -> datetime | None:
    """ISO 8601; a value without an offset is taken as UTC."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) > 40:
            raise ValueError
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "must be an ISO 8601 date or time, e.g. 2025-01-31T12:00:00Z"
                   ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
