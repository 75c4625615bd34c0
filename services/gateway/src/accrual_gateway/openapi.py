"""OpenAPI 3.1 document generated from the same descriptors as the routes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from accrual_gateway.shim import WKT_PASSTHROUGH, Route, enum_prefix, is_hidden

_SCALARS = {
    FieldDescriptor.TYPE_STRING: {"type": "string"}, FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"}, FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WKT = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.FieldMask": {"type": "string"},
}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "request_id"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                            "details": {"type": "array", "items": {"type": "object"}},
                                            "request_id": {"type": "string"}}}},
}


def _name(full_name: str) -> str:
    return full_name.removeprefix("accrual.").replace(".", "_")


class _Builder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        name = _name(enum.full_name)
        if name not in self.schemas:
            self.schemas[name] = {"type": "string", "enum": [
                v.name.removeprefix(enum_prefix(enum)) for v in enum.values if v.number]}
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_ENUM:
            item: dict[str, Any] = self.enum(field.enum_type)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            mt = field.message_type
            if mt.GetOptions().map_entry:
                return {"type": "object", "additionalProperties": self.field(mt.fields_by_name["value"])}
            item = dict(_WKT[mt.full_name]) if mt.full_name in WKT_PASSTHROUGH else self.message(mt)
        else:
            item = dict(_SCALARS.get(field.type, {"type": "string"}))
        if field.is_repeated:
            return {"type": "array", "items": item}
        if field.has_presence:
            return {"anyOf": [item, {"type": "null"}]}
        return item

    def message(self, desc: Descriptor, skip: Sequence[str] = ()) -> dict[str, Any]:
        name = _name(desc.full_name) + ("_Body" if skip else "")
        if name not in self.schemas:
            self.schemas[name] = {}
            self.schemas[name] = {"type": "object", "properties": {
                f.name: self.field(f) for f in desc.fields if f.name not in skip and not is_hidden(f)}}
        return {"$ref": f"#/components/schemas/{name}"}


def build_openapi(routes: Sequence[Route], *, title: str = "Accrual API",
                  version: str = "v1") -> dict[str, Any]:
    b = _Builder()
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
            {"name": f, "in": "path", "required": True, "schema": {"type": "string"}}
            for f in route.path_fields]
        op: dict[str, Any] = {
            "operationId": f"{m.containing_service.name}_{m.name}",
            "tags": [m.containing_service.name],
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": b.message(m.output_type)}}}, **errors},
        }
        if route.body == "*":
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": b.message(m.input_type, skip=route.path_fields) if route.path_fields
                else b.message(m.input_type)}}}
        elif route.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": b.field(m.input_type.fields_by_name[route.body])}}}
        else:
            for f in m.input_type.fields:
                if f.name in route.path_fields or is_hidden(f):
                    continue
                schema = b.field(f)
                params.append({"name": f.name, "in": "query", "required": False, "schema": schema})
        if params:
            op["parameters"] = params
        paths.setdefault(template, {})[route.verb.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": b.schemas, "securitySchemes": {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "BearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
    }
