"""/openapi.json describes the real app, and /docs shows it without internet access.

The two url_map tests compare the document with the routes the real app factory
registers, both ways: a route missing from the document, or a documented operation
with no route, fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from web.openapi import openapi_spec

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
MONEY = r"^\d+(\.\d{1,2})?$"  # "100.00" CNY, "100" JPY: ISO 4217 minor units


@pytest.fixture(scope="module")
def app(settings, resources) -> Flask:
    from web.app import create_app

    return create_app(settings, resources)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi_spec()


def app_operations(app: Flask) -> set[tuple[str, str]]:
    """(path template in OpenAPI syntax, method) for every real route but static files."""
    ops = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        ops |= {(path, m.lower()) for m in (rule.methods or ()) - {"HEAD", "OPTIONS"}}
    return ops


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items()
            for method in item if method in HTTP_METHODS}


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target: Any = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


# --- the document itself ---------------------------------------------------------------

def test_spec_is_a_valid_openapi_document(spec):
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not a dependency (yet): the structural checks below stand in
        validate = None
    if validate is not None:
        validate(spec)

    assert re.fullmatch(r"3\.[01]\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]
    for ref in refs(spec):
        resolve(spec, {"$ref": ref})  # every reference points at something
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http",
                                     "scheme": "bearer"}
    op_ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(op_ids) == len(set(op_ids))
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        assert path.startswith("/"), where
        assert op["responses"], where
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d|default", status), where
            assert response["description"], where
        params = [resolve(spec, p) for p in op.get("parameters", [])]
        for param in params:
            assert param["in"] in ("query", "header", "path", "cookie"), where
            assert param["name"] and "schema" in param, where
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), where
        assert all(p["required"] for p in params if p["in"] == "path"), where
        for requirement in op.get("security", []):
            assert set(requirement) <= set(schemes), where


def test_money_is_a_string_in_the_currencys_decimals_and_errors_share_one_shape(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["Money"]["type"] == "string"
    assert schemas["Money"]["pattern"] == MONEY
    for schema, fields in {"Order": ("total_amount", "amount_paid", "amount_refunded"),
                           "Payment": ("amount", "fee", "refunded_amount"),
                           "Refund": ("amount",)}.items():
        for field in fields:
            assert schemas[schema]["properties"][field]["$ref"].endswith("/Money"), field
    assert set(schemas["Error"]["required"]) == {"detail", "code"}
    own_formats = {"/callbacks/wechatpay", "/callbacks/alipay"}  # answered as they expect
    for path, _method, op in operations(spec):
        # The provider doubles answer as the providers they stand in for do.
        if path in own_formats or path.startswith("/doubles/"):
            continue
        for status, response in op["responses"].items():
            if status.startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


def test_the_real_providers_are_answered_in_their_own_formats(spec):
    wechat = spec["paths"]["/callbacks/wechatpay"]["post"]["responses"]
    assert "content" not in wechat["204"]
    assert wechat["401"]["content"]["application/json"]["schema"]["properties"]["code"] == {
        "type": "string", "enum": ["FAIL"]}
    alipay = spec["paths"]["/callbacks/alipay"]["post"]["responses"]
    assert alipay["200"]["content"]["text/plain"]["schema"]["enum"] == ["success"]
    assert alipay["401"]["content"]["text/plain"]["schema"]["enum"] == ["fail"]


def test_every_api_post_takes_an_idempotency_key(spec):
    posts = [(path, op) for path, method, op in operations(spec)
             if method == "post" and path.startswith("/api/v1/")]
    assert posts
    for path, op in posts:
        names = {resolve(spec, p)["name"] for p in op.get("parameters", [])}
        assert "Idempotency-Key" in names, path
        assert "422" in op["responses"] and "409" in op["responses"], path
        assert op["security"] == [{"bearerAuth": []}], path


# --- the document against the real app's routes ----------------------------------------

def test_every_route_of_the_app_is_documented(app, spec):
    undocumented = app_operations(app) - spec_operations(spec)
    assert not undocumented, f"routes missing from /openapi.json: {sorted(undocumented)}"


def test_every_documented_operation_has_a_route(app, spec):
    missing = spec_operations(spec) - app_operations(app)
    assert not missing, f"documented but not routed: {sorted(missing)}"


# --- served over HTTP ------------------------------------------------------------------

def test_openapi_json_is_served_without_a_key(api, spec):
    response = api.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == spec


def test_docs_page_lists_every_operation_and_needs_no_internet(api, spec):
    response = api.get("/docs")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "/api/v1/payments" in page
    for path, method, op in operations(spec):
        assert path in page and f'id="{op["operationId"]}"' in page, (method, path)
    for text in ("Idempotency-Key", "total_amount", "order_id", "idempotency_key_reused",
                 "Admin key", "^\\d+(\\.\\d{1,2})?$"):
        assert text in page, text
    # A request and a response example for every operation, from the document.
    assert page.count("Example request") == page.count("Example response") == len(
        list(operations(spec)))
    assert "POST /api/v1/orders HTTP/1.1" in page and "HTTP/1.1 201" in page
    # Self-contained: no scripts, no stylesheets or images fetched from elsewhere.
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)


def _conforms(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """Enough of JSON Schema to catch an example that drifted from its schema."""
    schema = resolve(spec, schema)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                _conforms(spec, option, value, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: {value!r} matches no option: {errors}")
    if "enum" in schema:
        assert value in schema["enum"], (where, value)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    python = {"object": dict, "array": list, "string": str, "integer": int,
              "number": (int, float), "boolean": bool, "null": type(None)}
    if kinds:
        assert any(isinstance(value, python[k]) for k in kinds), (where, value, kinds)
    if isinstance(value, str) and "pattern" in schema:
        assert re.search(schema["pattern"], value), (where, value, schema["pattern"])
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, (where, name)
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                _conforms(spec, prop, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for item in value:
            _conforms(spec, schema["items"], item, f"{where}[]")


def test_every_operation_carries_a_request_and_a_response_example(spec):
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        request = op["x-request-example"]
        assert request.startswith(f"{method.upper()} "), where
        assert ("Authorization: Bearer" in request) == bool(op.get("security")), where
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            _conforms(spec, body["schema"], body["example"], where + " body")
            assert '"' in request.split("\n\n", 1)[1], where
        successes = [r for s, r in op["responses"].items() if s.startswith("2")]
        assert successes, where
        for status, response in op["responses"].items():
            content = response.get("content", {}).get("application/json")
            if content is None:
                continue
            assert "example" in content, (where, status)
            _conforms(spec, content["schema"], content["example"], f"{where} {status}")
