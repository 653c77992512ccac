"""Reading request bodies: JSON objects only, numbers as Decimal, never float."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from flask import request

from domain.errors import InvalidInput


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


def json_body(allow_empty: bool = True) -> dict[str, Any]:
    return parse_json_object(request.get_data(cache=True), allow_empty=allow_empty)


def optional_str(body: dict[str, Any], field: str, max_len: int = 255) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidInput(f"{field} must be a string of at most {max_len} characters",
                           code="invalid_field", field=field)
    return value


def optional_int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a positive whole number", code="invalid_field",
                           field=field)
    try:
        number = int(value) if not isinstance(value, Decimal) else int(value)
        if isinstance(value, Decimal) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a positive whole number", code="invalid_field",
                           field=field) from None
    if number <= 0 or number > 2**63 - 1:
        raise InvalidInput(f"{field} must be a positive whole number", code="invalid_field",
                           field=field)
    return number
