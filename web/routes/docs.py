"""GET /openapi.json and GET /docs: the API document and a page rendered from it.

The page is plain HTML with inline CSS, built on our server from the same document:
no CDN, no JavaScript, so it works on a machine without internet access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, jsonify, render_template
from markupsafe import Markup, escape

from web.deps import resources
from web.openapi import openapi_spec
from web.openapi_examples import resolve_ref

bp = Blueprint("docs", __name__)

METHOD_ORDER = ("get", "post", "put", "patch", "delete")


@bp.get("/openapi.json")
def openapi_json():
    settings = resources().settings
    return jsonify(openapi_spec(settings.supported_currencies, settings.is_dev))


@bp.get("/docs")
def docs_page():
    settings = resources().settings
    spec = openapi_spec(settings.supported_currencies, settings.is_dev)
    reader = _SpecReader(spec)
    return render_template("docs.html", info=spec["info"], operations=reader.operations(),
                           schemas=reader.schemas(), code=inline_code)


def _response_example(op: dict[str, Any]) -> tuple[str, str]:
    """The first success answer's example as HTTP text (the document carries it)."""
    for status, response in op["responses"].items():
        if not status.startswith("2"):
            continue
        contents: dict[str, dict[str, Any]] = response.get("content", {})
        media = next(iter(contents), None)
        content = contents.get(media, {}) if media else {}
        head = f"HTTP/1.1 {status}" + (f"\nContent-Type: {media}" if media else "")
        if media == "application/json" and "example" in content:
            return status, head + "\n\n" + json.dumps(content["example"], indent=2,
                                                        ensure_ascii=False)
        return status, head + ("\n\n(" + media + ")" if media else "")
    return "", ""


def inline_code(text: str) -> Markup:
    """`backticked` words of the document's descriptions as <code>, the rest escaped."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{part}</code>" if i % 2 else part
                          for i, part in enumerate(parts)))


@dataclass
class Field:
    name: str
    type: str
    required: bool
    notes: str


@dataclass
class Response:
    status: str
    description: str
    media: str | None
    schema: str | None  # a component name (linked) or a type in words
    schema_is_ref: bool
    headers: list[str]


@dataclass
class Operation:
    anchor: str
    method: str
    path: str
    tag: str
    summary: str
    description: str
    access: str
    parameters: list[Field] = field(default_factory=list)
    body_schema: str | None = None
    body_required: bool = False
    body_fields: list[Field] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    request_example: str = ""
    response_example_status: str = ""
    response_example: str = ""


class _SpecReader:
    """Turns the OpenAPI document into rows a template can print."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def operations(self) -> list[Operation]:
        out = []
        for path, methods in self.spec["paths"].items():
            for method in sorted(methods, key=METHOD_ORDER.index):
                out.append(self._operation(path, method, methods[method]))
        tags = [t["name"] for t in self.spec.get("tags", [])]
        return sorted(out, key=lambda o: tags.index(o.tag) if o.tag in tags else len(tags))

    def schemas(self) -> list[tuple[str, str, list[Field]]]:
        out = []
        for name, schema in self.spec["components"]["schemas"].items():
            fields = self.fields(schema)
            summary = (schema.get("description", "") if fields else
                       f"{self.type_of(schema)}: {self._notes(schema, '')}".rstrip(": ")
                       + (f". {schema['description']}" if "description" in schema else ""))
            out.append((name, summary, fields))
        return out

    def _operation(self, path: str, method: str, op: dict[str, Any]) -> Operation:
        if not op.get("security"):
            access = "Public: no API key"
        elif op.get("x-admin-only"):
            access = "Admin key"
        else:
            access = "Any API key (user keys: own resources only)"
        result = Operation(
            anchor=op["operationId"], method=method.upper(), path=path,
            tag=op.get("tags", [""])[0], summary=op.get("summary", ""),
            description=op.get("description", ""), access=access)
        for raw in op.get("parameters", []):
            param = self._resolve(raw)
            result.parameters.append(Field(
                f"{param['name']} ({param['in']})", self.type_of(param["schema"]),
                bool(param.get("required")), self._notes(param["schema"],
                                                         param.get("description", ""))))
        body = op.get("requestBody")
        if body:
            # JSON for ours; a provider's notification may be form-encoded (Alipay).
            schema = next(iter(body["content"].values()))["schema"]
            result.body_schema = self._ref_name(schema) or self.type_of(schema)
            result.body_required = bool(body.get("required"))
            result.body_fields = self.fields(schema)
        for status, response in op["responses"].items():
            media, schema = next(iter(response.get("content", {}).items()), (None, None))
            schema = (schema or {}).get("schema")
            result.responses.append(Response(
                status=status, description=response["description"], media=media,
                schema=(self._ref_name(schema) or self.type_of(schema)) if schema else None,
                schema_is_ref=bool(schema and self._ref_name(schema)),
                headers=list(response.get("headers", {}))))
        result.request_example = op.get("x-request-example", "")
        result.response_example_status, result.response_example = _response_example(op)
        return result

    def fields(self, schema: dict[str, Any]) -> list[Field]:
        """The properties of an object schema, following $ref and allOf."""
        schema = self._resolve(schema)
        if "allOf" in schema:
            return [f for part in schema["allOf"] for f in self.fields(part)]
        required = set(schema.get("required", []))
        return [Field(name, self.type_of(prop), name in required,
                      self._notes(prop, self._resolve(prop).get("description", "")))
                for name, prop in schema.get("properties", {}).items()]

    def type_of(self, schema: dict[str, Any]) -> str:
        """A schema in a few words: "Money", "array of Payment", "integer or null"."""
        name = self._ref_name(schema)
        if name:
            return name
        if "anyOf" in schema:
            return " or ".join(self.type_of(s) for s in schema["anyOf"])
        if "allOf" in schema:
            return " and ".join(self.type_of(s) for s in schema["allOf"])
        if "const" in schema:
            return f"always {str(schema['const']).lower()}"
        kind = schema.get("type", "any")
        if kind == "array":
            return f"array of {self.type_of(schema.get('items', {}))}"
        if isinstance(kind, list):
            return " or ".join(kind)
        return f"{kind} ({schema['format']})" if "format" in schema else str(kind)

    def _notes(self, schema: dict[str, Any], description: str) -> str:
        schema = self._resolve(schema)
        notes = [description.rstrip(".")] if description else []
        if "enum" in schema:
            notes.append("one of: " + ", ".join(str(v) for v in schema["enum"]))
        for key, label in (("pattern", "pattern"), ("default", "default"),
                           ("minLength", "min length"), ("maxLength", "max length"),
                           ("minimum", "min"), ("maximum", "max")):
            if key in schema:
                notes.append(f"{label} {schema[key]}")
        return "; ".join(notes)

    def _ref_name(self, schema: dict[str, Any] | None) -> str | None:
        ref = (schema or {}).get("$ref", "")
        return ref.rsplit("/", 1)[-1] if ref else None

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        return resolve_ref(self.spec, node)
