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
