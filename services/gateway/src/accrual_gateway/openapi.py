"""OpenAPI 3.1 document generated from the same descriptors as the routes.

Descriptions come from the proto comments (the descriptor set ``make proto`` writes with
source info), ``required`` from ``(google.api.field_behavior) = REQUIRED``, operation ids are
the lowerCamel RPC names, and the main operations carry examples from the seed documents.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import accrual.options.v1.options_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual_platform.grpc_server import required_scope
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

from accrual_gateway.codec import WKT_PASSTHROUGH, dumps, enum_prefix, is_decimal, is_hidden, to_json
from accrual_gateway.routing import Route

_SCALARS = {
    FieldDescriptor.TYPE_STRING: {"type": "string"}, FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64"},
    # JSON numbers: the API's 64-bit fields are counts, far below 2**53 (gateway README).
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "format": "uint64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"}, FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.FieldMask": {"type": "string"},
}
# A decimal field (codec.is_decimal): answered as a JSON number written from its exact text;
# a request may send a number or a decimal string.
_DECIMAL_OUT: dict[str, Any] = {"type": "number"}
_DECIMAL_IN: dict[str, Any] = {"anyOf": [
    {"type": "number"},
    {"type": "string", "pattern": r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"}]}
_REF = "#/components/schemas/"
# The body every error response carries (errors.HttpError.body and errors.error_from_rpc).
ERROR_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "description": "An error response.",
              "properties": {"error": {"$ref": _REF + "ErrorBody"}}},
    "ErrorBody": {
        "type": "object", "required": ["code", "message", "details", "request_id"],
        "description": "What went wrong; the same shape for every status.",
        "properties": {
            "code": {"type": "string", "description": "Machine-readable snake_case code, for example"
                     " validation_failed, idempotency_conflict, not_found or rate_limited."},
            "message": {"type": "string", "description": "Human-readable explanation."},
            "details": {"type": "array", "description": "Field violations and error causes.",
                        "items": {"anyOf": [{"$ref": _REF + "FieldViolation"},
                                            {"$ref": _REF + "ErrorInfo"},
                                            {"$ref": _REF + "OtherErrorDetail"}]}},
            "request_id": {"type": "string", "description": "Also in the X-Request-Id header."}}},
    "FieldViolation": {
        "type": "object", "required": ["field", "description"],
        "description": "One invalid field of the request.",
        "properties": {"field": {"type": "string", "description": "Path of the field, e.g. tiers[0].name."},
                       "description": {"type": "string", "description": "What is wrong with it."}}},
    "ErrorInfo": {
        "type": "object", "required": ["reason", "domain", "metadata"],
        "description": "The cause of the error with its structured metadata.",
        "properties": {"reason": {"type": "string"}, "domain": {"type": "string"},
                       "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "OtherErrorDetail": {
        "type": "object", "required": ["type"], "description": "A detail of another kind.",
        "properties": {"type": {"type": "string", "description": "Its protobuf type URL."}}},
}
DESCRIPTION = ("REST gateway of the Accrual loyalty platform, generated from its gRPC contracts. "
               "Authenticate with an API key in X-API-Key or as a Bearer token; every error has "
               "the Error body, and X-Request-Id identifies each request. Each operation's "
               "x-required-scope names the API-key scope it needs (\"authenticated\": any key); "
               "GET /v1/keys/current lists the scopes a key allows.")
_PROGRAM = "550e8400-e29b-41d4-a716-446655440000"
# Request examples of the main operations, from the seed documents (Scrip's POST /v1/events).
EXAMPLES: dict[str, dict[str, Any]] = {
    "CreateProgram": {"name": "Demo"},
    "CreateRule": {"name": "1 point per dollar", "event_type": "purchase",
                   "condition": "properties.amount > 0", "formula": "properties.amount * 1"},
    "SubmitEvent": {"program_id": _PROGRAM, "idempotency_key": "order-12345-completed",
                    "external_id": "user_abc123", "event_type": "purchase",
                    "event_timestamp": "2024-01-15T10:30:00Z", "event_data": {"amount": 125}},
}


def _answer_example() -> Any:
    """SubmitEvent's answer to the seed's request, shaped by the codec as the gateway shapes it."""
    event = ingest_pb2.Event(
        event_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", program_id=_PROGRAM,
        idempotency_key="order-12345-completed", event_type="purchase", external_id="user_abc123",
        status=ingest_pb2.EVENT_STATUS_PENDING, origin=ingest_pb2.EVENT_ORIGIN_EXTERNAL)
    event.event_data.update({"amount": 125})
    event.event_timestamp.FromJsonString("2024-01-15T10:30:00Z")
    event.received_at.FromJsonString("2024-01-15T10:30:01Z")
    return json.loads(dumps(to_json(event)))


_DESCRIPTOR_SET = pathlib.Path(accrual.options.v1.options_pb2.__file__).parents[2] / "descriptors.binpb"


def _walk(prefix: str, path: tuple[int, ...], messages: Any, enums: Any) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source path, full name) of every message, field, enum and enum value under a scope."""
    for i, e in enumerate(enums):
        yield (*path, *(_ENUM_IN[len(path) > 2]), i), f"{prefix}.{e.name}"
        for j, v in enumerate(e.value):
            yield (*path, *(_ENUM_IN[len(path) > 2]), i, 2, j), f"{prefix}.{e.name}.{v.name}"
    for i, m in enumerate(messages):
        here, name = (*path, *(_MSG_IN[len(path) > 2]), i), f"{prefix}.{m.name}"
        yield here, name
        for j, f in enumerate(m.field):
            yield (*here, 2, j), f"{name}.{f.name}"
        yield from _walk(name, here, m.nested_type, m.enum_type)


# Source-path tags (descriptor.proto): file.message_type 4 and file.enum_type 5 at top level,
# message.nested_type 3 and message.enum_type 4 inside a message.
_MSG_IN = {False: (4,), True: (3,)}
_ENUM_IN = {False: (5,), True: (4,)}


@functools.cache
def comments() -> dict[str, str]:
    """Leading comment of every element of the project's protos, by full name."""
    if not _DESCRIPTOR_SET.exists():
        return {}
    fds = descriptor_pb2.FileDescriptorSet.FromString(_DESCRIPTOR_SET.read_bytes())
    out: dict[str, str] = {}
    for f in fds.file:
        names = dict(_walk(f.package, (), f.message_type, f.enum_type))
        for i, svc in enumerate(f.service):
            names[(6, i)] = f"{f.package}.{svc.name}"
            names.update({(6, i, 2, j): f"{f.package}.{svc.name}.{m.name}" for j, m in enumerate(svc.method)})
        for loc in f.source_code_info.location:
            name = names.get(tuple(loc.path))
            text = " ".join(line.strip() for line in loc.leading_comments.strip().splitlines())
            if name and text:
                out[name] = text
    return out


def _decimal_note(schema: dict[str, Any], field: FieldDescriptor) -> dict[str, Any]:
    """A decimal field's schema, its description saying how the number travels."""
    if not is_decimal(field):
        return schema
    note = ("An exact decimal, answered as a JSON number written from its decimal text (never "
            "rounded through a double); a request may send a JSON number or a decimal string.")
    return {**schema, "description": f"{schema['description']} {note}" if "description" in schema else note}


def _described(schema: dict[str, Any], full_name: str) -> dict[str, Any]:
    text = comments().get(full_name)
    if not text:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "description": text}
    return {**schema, "description": text}


def is_required(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]


def operation_id(name: str) -> str:
    return name[:1].lower() + name[1:]


def _name(full_name: str) -> str:
    return full_name.removeprefix("accrual.").replace(".", "_")


def _types(scope: Any, package: str) -> Iterator[str]:
    for e in scope.enum_types_by_name.values():
        yield e.full_name.removeprefix(package + ".")
    for m in scope.message_types_by_name.values():
        yield m.full_name.removeprefix(package + ".")
        yield from _types(_Nested(m), package)


class _Nested:
    """A message seen as a scope of nested types, like a file."""

    def __init__(self, desc: Descriptor) -> None:
        self.enum_types_by_name = {e.name: e for e in desc.enum_types}
        self.message_types_by_name = {m.name: m for m in desc.nested_types}


def schema_names(files: Iterable[FileDescriptor]) -> dict[str, str]:
    """{full name: schema name} of the project's types: the name without its package (which
    generated clients turn into class names) unless two packages (or the error schemas) share it."""
    seen: dict[str, FileDescriptor] = {}
    todo = list(files)
    while todo:
        f = todo.pop()
        if f.name not in seen and f.package.startswith("accrual."):
            seen[f.name] = f
            todo.extend(f.dependencies)
    local = [(f.package, short) for f in seen.values() for short in _types(f, f.package)]
    counts = Counter([short for _, short in local] + list(ERROR_SCHEMAS))
    return {f"{package}.{short}": short.replace(".", "_") if counts[short] == 1 else _name(f"{package}.{short}")
            for package, short in local}


def _reachable(desc: Descriptor, seen: set[str]) -> set[str]:
    """Full names of ``desc`` and every message type its fields reach."""
    if desc.full_name not in seen:
        seen.add(desc.full_name)
        for f in desc.fields:
            if f.message_type is not None:
                _reachable(f.message_type, seen)
    return seen


class _Builder:
    def __init__(self, inputs: set[str], names: dict[str, str]) -> None:
        self.schemas: dict[str, Any] = dict(ERROR_SCHEMAS)
        self.names = names
        # Answers carry every field (codec.shape_output), so an answer-only schema requires all.
        self.inputs = inputs

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        name = self.names.get(enum.full_name) or _name(enum.full_name)
        if name not in self.schemas:
            values = [v for v in enum.values if v.number]
            self.schemas[name] = _described({"type": "string", "enum": [
                v.name.removeprefix(enum_prefix(enum)) for v in values]}, enum.full_name)
            notes = [f"{v.name.removeprefix(enum_prefix(enum))}: {comments()[f'{enum.full_name}.{v.name}']}"
                     for v in values if f"{enum.full_name}.{v.name}" in comments()]
            if notes:
                self.schemas[name]["description"] = " ".join(
                    [self.schemas[name].get("description", ""), *notes]).strip()
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        enum_type, mt = field.enum_type, field.message_type
        if enum_type is not None:
            item: dict[str, Any] = self.enum(enum_type)
        elif mt is not None:
            if mt.GetOptions().map_entry:
                return {"type": "object", "additionalProperties": self.field(mt.fields_by_name["value"])}
            item = dict(_WKT[mt.full_name]) if mt.full_name in WKT_PASSTHROUGH else self.message(mt)
        elif is_decimal(field):
            containing = field.containing_type
            item = dict(_DECIMAL_IN if containing is not None and containing.full_name in self.inputs
                        else _DECIMAL_OUT)
        else:
            item = dict(_SCALARS.get(field.type, {"type": "string"}))
        if field.is_repeated:
            return {"type": "array", "items": item}
        if field.has_presence:
            return {"anyOf": [item, {"type": "null"}]}
        return item

    def message(self, desc: Descriptor, skip: Sequence[str] = ()) -> dict[str, Any]:
        name = (self.names.get(desc.full_name) or _name(desc.full_name)) + ("_Body" if skip else "")
        if name not in self.schemas:
            self.schemas[name] = {}
            fields = [f for f in desc.fields if f.name not in skip and not is_hidden(f)]
            schema: dict[str, Any] = {"type": "object", "properties": {
                f.name: _decimal_note(_described(self.field(f), f.full_name), f) for f in fields}}
            if required := [f.name for f in fields
                             if is_required(f) or desc.full_name not in self.inputs]:
                schema["required"] = required
            self.schemas[name] = _described(schema, desc.full_name)
        return {"$ref": f"#/components/schemas/{name}"}


def build_openapi(routes: Sequence[Route], *, title: str = "Accrual API",
                  version: str = "v1") -> dict[str, Any]:
    inputs: set[str] = set()
    for route in routes:
        _reachable(route.method.input_type, inputs)
    b = _Builder(inputs, schema_names({r.method.containing_service.file for r in routes}))
    paths: dict[str, Any] = {}
    errors = {str(s): {"description": d, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
        for s, d in [(400, "invalid request"), (401, "missing or unknown API key"),
                     (403, "API key lacks the scope"), (404, "not found"), (409, "conflict"),
                     (422, "validation failed"), (429, "rate limited"), (503, "unavailable, retry")]}
    for route in routes:
        m = route.method
        template = re.sub(r"\{([a-zA-Z0-9_.]+)(=[^}]*)?\}", r"{\1}", route.template)
        params: list[dict[str, Any]] = [
            _described({"name": f, "in": "path", "required": True, "schema": {"type": "string"}},
                       f"{m.input_type.full_name}.{f}") for f in route.path_fields]
        op: dict[str, Any] = {
            "operationId": operation_id(m.name),
            "tags": [m.containing_service.name],
            "x-required-scope": required_scope(f"/{m.containing_service.full_name}/{m.name}"),
            **({"summary": comments()[m.full_name].split(". ")[0].rstrip("."),
                "description": comments()[m.full_name]} if m.full_name in comments() else {}),
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": b.message(m.output_type),
                **({"example": _answer_example()} if m.name == "SubmitEvent" else {})}}}, **errors},
        }
        if route.body == "*":
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": b.message(m.input_type, skip=route.path_fields) if route.path_fields
                else b.message(m.input_type),
                **({"example": EXAMPLES[m.name]} if m.name in EXAMPLES else {})}}}
        elif route.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": b.field(m.input_type.fields_by_name[route.body])}}}
        else:
            for f in m.input_type.fields:
                if f.name in route.path_fields or is_hidden(f):
                    continue
                params.append(_described({"name": f.name, "in": "query", "required": is_required(f),
                                          "schema": b.field(f)}, f.full_name))
        if params:
            op["parameters"] = params
        paths.setdefault(template, {})[route.verb.lower()] = op
    services = {route.method.containing_service for route in routes}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "tags": [{"name": s.name, **({"description": comments()[s.full_name]}
                                     if s.full_name in comments() else {})}
                 for s in sorted(services, key=lambda s: s.full_name)],
        "paths": paths,
        "components": {"schemas": b.schemas, "securitySchemes": {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "BearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
    }
