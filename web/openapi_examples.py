"""Examples for the OpenAPI document: a request and a response for every operation.

Built from the document's own schemas (their `examples`, defaults and enums, and a few
field names that read better with a realistic value), so an example cannot drift from
the schema it illustrates. `with_examples` sets:
- `example` on every parameter and on every JSON request body;
- `example` on every JSON response (errors: the first code their description names);
- `x-request-example` on every operation: the HTTP request as text, the docs page's
  request example.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

Schema = dict[str, Any]

TIME = "2026-01-31T12:00:00+00:00"
# Field names whose generic example ("string", 1) would read as noise.
BY_NAME: dict[str, Any] = {
    "order_number": "ORD-20260131-9F2C4A1B7E3D", "reason": "customer asked",
    "transaction_id": "txn_9f2c4a1b", "provider": "sandbox", "method": "wechat",
    "method_name": "WeChat Pay", "provider_refund_id": "rf_58514c40",
    "pay_url": "http://127.0.0.1:8000/sandbox/pay/tkt_58514c40",
    "checkout_url": "http://127.0.0.1:8000/checkout/42?token=3f1c9a...",
    "qr_payload": "http://127.0.0.1:8000/sandbox/pay/tkt_58514c40",
    "reference": "tkt_58514c40", "ticket": "tkt_58514c40", "token": "3f1c9a...",
    "actor": "admin", "event": "payment_created", "name": "WeChat Pay", "code": "wechat",
    "fee_rate": "0.006", "last_error": None, "detail": {"method": "wechat"},
    "Idempotency-Key": "5f0c7d2e-8a41-4b6e-9a53-2f1de0c0a7b1",
    "merchant_payment_id": 42, "refund_id": 7, "user_id": 1, "order_id": 7,
    "payment_id": 42, "callback_id": 3, "id": 42, "seconds_left": 1740,
    "fee": "0.60", "refunded_amount": "0.00", "amount_paid": "0.00", "amount_refunded": "0.00",
    "from": None, "paid_at": None, "completed_at": None, "page_size": 20, "total": 1,
}
_CODE = re.compile(r"`([a-z0-9_]+)`")


def resolve_ref(spec: dict[str, Any], node: Schema) -> Schema:
    """Follow a local $ref (siblings of the $ref override the target's keys)."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


class _Examples:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def resolve(self, node: Schema) -> Schema:
        return resolve_ref(self.spec, node)

    def value(self, schema: Schema, name: str | None = None, depth: int = 0) -> Any:
        s = self.resolve(schema)
        if name in BY_NAME and _fits(BY_NAME[name], s):
            return BY_NAME[name]
        if "example" in s:
            return s["example"]
        if s.get("examples"):
            return s["examples"][0]
        if "const" in s:
            return s["const"]
        if "default" in s:
            return s["default"]
        if s.get("enum"):
            return s["enum"][0]
        if "anyOf" in s:
            options = [o for o in s["anyOf"] if self.resolve(o).get("type") != "null"]
            return self.value(options[0], name, depth) if options else None
        if "allOf" in s:
            merged: dict[str, Any] = {}
            for part in s["allOf"]:
                merged.update(self.value(part, name, depth) or {})
            return merged
        kind = s.get("type")
        if isinstance(kind, list):
            kind = kind[0]
        if kind == "object" or "properties" in s:
            if depth > 5:
                return {}
            example = {key: self.value(prop, key, depth + 1)
                       for key, prop in s.get("properties", {}).items()}
            for key in s.get("required", []):  # required but not described: a placeholder
                example.setdefault(key, BY_NAME.get(key, "string"))
            return example
        if kind == "array":
            return [self.value(s.get("items", {}), name, depth + 1)]
        if kind == "integer":
            return s.get("minimum", 1)
        if kind == "number":
            return s.get("minimum", 1)
        if kind == "boolean":
            return False
        if s.get("format") == "date-time":
            return TIME
        if s.get("format") == "uri":
            return "https://shop.example/hooks/payments"
        return "string"


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
    "null": type(None)}


def _fits(value: Any, schema: Schema) -> bool:
    """Whether a by-name example suits this field's schema (type, enum)."""
    if schema.get("enum") and value not in schema["enum"]:
        return False
    kinds = schema.get("type")
    if kinds is None:
        return "anyOf" in schema or "$ref" not in schema
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(k in _JSON_TYPES and isinstance(value, _JSON_TYPES[k]) for k in kinds)


def _error_example(description: str) -> dict[str, str]:
    found = _CODE.search(description)
    return {"detail": re.sub(r"\s*\(.*?\)|`", "", description).split(";")[0].strip()
            or "See the code", "code": found.group(1) if found else "invalid_request"}


def with_examples(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of `spec` with the examples described above."""
    spec = copy.deepcopy(spec)
    ex = _Examples(spec)
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = [ex.resolve(p) for p in op.get("parameters", [])]
            for raw, param in zip(op.get("parameters", []), params, strict=True):
                if "$ref" not in raw:
                    raw["example"] = ex.value(param["schema"], param["name"], depth=1)
            body = None
            json_body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if json_body is not None:
                body = ex.value(json_body["schema"])
                json_body["example"] = body
            for response in op["responses"].values():
                for media, content in response.get("content", {}).items():
                    if media != "application/json":
                        continue
                    is_error = content["schema"].get("$ref", "").endswith("/Error")
                    content["example"] = (_error_example(response["description"])
                                          if is_error else ex.value(content["schema"]))
            op["x-request-example"] = _request_text(ex, path, method, op, params, body)
    # Parameters defined once under components carry their example too.
    for param in spec["components"].get("parameters", {}).values():
        param["example"] = ex.value(param["schema"], param["name"], depth=1)
    return spec


def _request_text(ex: _Examples, path: str, method: str, op: Schema,
                  params: list[Schema], body: Any) -> str:
    values = {p["name"]: p.get("example", ex.value(p["schema"], p["name"], depth=1))
              for p in params}
    url = re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), 1)), path)
    query = [f"{p['name']}={values[p['name']]}" for p in params
             if p["in"] == "query" and p.get("required")]
    lines = [f"{method.upper()} {url}{'?' + '&'.join(query) if query else ''} HTTP/1.1"]
    if op.get("security"):
        lines.append("Authorization: Bearer pk_admin_..." if op.get("x-admin-only")
                     else "Authorization: Bearer pk_user_...")
    for p in params:
        if p["in"] == "header":
            lines.append(f"{p['name']}: {values[p['name']]}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines += ["", json.dumps(body, indent=2, ensure_ascii=False)]
    return "\n".join(lines)
