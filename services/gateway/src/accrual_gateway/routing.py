"""Routes generated from the ``google.api.http`` annotations of the contracts.

Every annotated method of the given proto files becomes a route; nothing here names an RPC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from accrual.options.v1 import options_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


@dataclass(frozen=True)
class Route:
    method: MethodDescriptor
    verb: str
    template: str
    regex: re.Pattern[str]
    path_fields: tuple[str, ...]
    body: str
    response_body: str
    literal_weight: int
    invalid_status: int

    @property
    def full_method(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"


_SEGMENT = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...], int]:
    fields: list[str] = []
    pattern = ""
    pos = 0
    for m in _SEGMENT.finditer(template):
        pattern += re.escape(template[pos:m.start()])
        sub = m.group(2)
        if sub and sub not in ("*",):
            inner = re.escape(sub).replace(r"\*\*", ".+").replace(r"\*", "[^/:]+")
            pattern += f"(?P<f{len(fields)}>{inner})"
        else:
            pattern += f"(?P<f{len(fields)}>[^/:]+)"
        fields.append(m.group(1))
        pos = m.end()
    pattern += re.escape(template[pos:])
    literal = len(_SEGMENT.sub("", template))
    return re.compile(f"^{pattern}$"), tuple(fields), literal


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *[b for extra in rule.additional_bindings for b in _bindings(extra)]]


def build_routes(files: Sequence[FileDescriptor]) -> list[Route]:
    routes: list[Route] = []
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                invalid = options.Extensions[options_pb2.invalid_argument_http_status] or 400
                for rule in _bindings(options.Extensions[annotations_pb2.http]):
                    kind = rule.WhichOneof("pattern")
                    if kind is None:
                        continue
                    if kind == "custom":
                        verb, template = rule.custom.kind.upper(), rule.custom.path
                    else:
                        verb, template = kind.upper(), getattr(rule, kind)
                    regex, fields, literal = compile_template(template)
                    routes.append(Route(method, verb, template, regex, fields, rule.body,
                                        rule.response_body, literal, invalid))
    routes.sort(key=lambda r: (-r.literal_weight, len(r.path_fields)))
    return routes


def coalesced_by(method: MethodDescriptor) -> MethodDescriptor | None:
    """The method of the same service that carries many calls of ``method`` at once, when its
    ``coalesced_by`` option names one."""
    name = method.GetOptions().Extensions[options_pb2.coalesced_by]
    if not name:
        return None
    carrier: MethodDescriptor | None = method.containing_service.methods_by_name.get(name)
    if carrier is None:
        raise ValueError(f"{method.full_name}: coalesced_by names no method {name!r} of its service")
    return carrier


def request_class(method: MethodDescriptor) -> type[Message]:
    return GetMessageClass(method.input_type)


def response_class(method: MethodDescriptor) -> type[Message]:
    return GetMessageClass(method.output_type)




@dataclass(frozen=True)
class Match:
    """A request's route and the values of the template's path fields in its path."""

    route: Route
    path_values: dict[str, str]


class RouteTable:
    """The routes in matching order: the most literal template first."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    def match(self, path: str, verb: str) -> Match | None:
        for route in self.routes:
            if route.verb == verb and (m := route.regex.match(path)) is not None:
                return Match(route, {name: m.group(f"f{i}") for i, name in enumerate(route.path_fields)})
        return None

    def has_path(self, path: str) -> bool:
        """Whether some route has this path (for another verb: a 405, not a 404)."""
        return any(route.regex.match(path) for route in self.routes)
