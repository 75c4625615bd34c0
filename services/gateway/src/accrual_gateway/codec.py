"""JSON to proto and proto to JSON, by the descriptors of the messages.

JSON uses proto field names (snake_case) on output, accepts those or the fields' JSON names
(lowerCamelCase, e.g. CDP's ``externalEventId``) on input, and spells enum values without
their type prefix (``PENDING`` for ``EVENT_STATUS_PENDING``).

Input policy, the same on every route (see the gateway README):

- Unknown fields are rejected (400 ``invalid_argument`` naming the field), never ignored: a
  misspelt optional field would otherwise be dropped silently.
- ``null`` means "absent" for every field.
- Scalars must have the declared JSON type (a number is not a string, ``"true"`` is not a
  boolean); timestamps are RFC 3339 strings with a time zone; enums take their unprefixed
  names (or the full proto names).
- Violations name the field as the client spelled it, with its path (``events[3].event_data``).
- A ``google.protobuf.Struct`` field with an exact-text sibling (a string field marked
  ``exact_json_of``) travels as that text, its numbers exact (``9007199254740993`` stays
  itself, ``125`` stays an integer), and answers are rendered from it. The text field is
  the transport's, not the API's: it is neither accepted nor shown.
- A decimal field (a string field marked ``(accrual.options.v1.decimal)``: points, amounts,
  multipliers) takes a JSON number or a decimal string; a number is sent on as its exact
  decimal text (``1e-7`` as ``0.0000001``), never through a double the body did not hold.

Output writes decimal fields as JSON numbers from their text (``125``, ``262.5``) and 64-bit
integers (counts) as JSON numbers too: see the gateway README.
"""

from __future__ import annotations

import base64
import decimal
import math
import re
from collections.abc import Sequence
from typing import Any, cast

import orjson
from accrual.options.v1 import options_pb2
from accrual_platform import errors, exactjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from accrual_gateway.errors import ShimError

WKT_PASSTHROUGH = {"google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Value",
                   "google.protobuf.ListValue", "google.protobuf.Duration",
                   "google.protobuf.FieldMask"}


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field (mypy's stubs allow None for any field)."""
    desc = field.message_type
    assert desc is not None, field.full_name
    return desc


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The enum type of an enum field."""
    enum = field.enum_type
    assert enum is not None, field.full_name
    return enum


def descriptor_of(message: Message) -> Descriptor:
    """A message's descriptor (the stubs name two classes for it; they behave the same)."""
    return cast(Descriptor, message.DESCRIPTOR)


def enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


_EXACT_TEXT: dict[str, tuple[dict[str, str], frozenset[str]]] = {}


def _exact_text(desc: Descriptor) -> tuple[dict[str, str], frozenset[str]]:
    """({Struct field name: name of its exact-text sibling}, the exact-text field names) of
    a message type, made once: reading field options costs microseconds per field."""
    found = _EXACT_TEXT.get(desc.full_name)
    if found is None:
        pairs = {}
        for field in desc.fields:
            of = field.GetOptions().Extensions[options_pb2.exact_json_of]
            if of:
                pairs[of] = field.name
        found = _EXACT_TEXT[desc.full_name] = (pairs, frozenset(pairs.values()))
    return found


def exact_text_fields(desc: Descriptor) -> dict[str, str]:
    """{Struct field name: name of its exact-text sibling} of a message type."""
    return _exact_text(desc)[0]


_DECIMAL: dict[str, bool] = {}


def is_decimal(field: FieldDescriptor) -> bool:
    """A string field marked ``(accrual.options.v1.decimal)``: an exact decimal number."""
    found = _DECIMAL.get(field.full_name)
    if found is None:
        found = _DECIMAL[field.full_name] = (
            field.type == FieldDescriptor.TYPE_STRING
            and field.GetOptions().Extensions[options_pb2.decimal])
    return found


#: A JSON number's text (RFC 8259): what a decimal field's text is written as, unchanged.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
#: Decimal text a decimal field accepts in a string: what the services' Decimal reads, less
#: NaN, Infinity and digit separators.
_DECIMAL_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
#: Beyond these exponents a number's decimal text keeps its exponent instead of hundreds of
#: zeros (the services refuse such values anyway, by the field's own rule).
_PLAIN_EXPONENTS = range(-40, 41)


def _decimal_text(number: decimal.Decimal) -> str:
    return format(number, "f") if number.adjusted() in _PLAIN_EXPONENTS else str(number)


def decimal_out(text: str) -> Any:
    """A decimal field's JSON: its text as a JSON number (``125``, ``-20.5``), written as it
    is, never through a double; text that is not a JSON number (``+50``, ``.5``) is written
    as the same value; empty text is null."""
    if _JSON_NUMBER.fullmatch(text):
        return orjson.Fragment(text)
    if not text:
        return None
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return text
    return orjson.Fragment(_decimal_text(number)) if number.is_finite() else text


def _decimal_in(value: Any, path: str) -> str:
    """A decimal field's input as decimal text: a JSON number exactly as the body held it
    (parse_body reads numbers a double would change as Decimal), or a decimal string."""
    if isinstance(value, str):
        if value and not _DECIMAL_TEXT.fullmatch(value):
            raise _bad(path, DECIMAL_RULE)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        raise _bad(path, DECIMAL_RULE)
    if isinstance(value, int):
        return str(value)
    # A double's shortest spelling is the body's number: parse_body reads any number with
    # more significant digits than a double keeps as a Decimal.
    number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(repr(value))
    if not number.is_finite():
        raise _bad(path, DECIMAL_RULE)
    return _decimal_text(number)


DECIMAL_RULE = 'must be a decimal number: a JSON number or a string such as "12.5"'


def is_hidden(field: FieldDescriptor) -> bool:
    """An exact-text field: the shim's transport, never a field of the JSON API."""
    containing = field.containing_type
    assert containing is not None, field.full_name
    return field.name in _exact_text(containing)[1]


def parse_body(raw: bytes) -> Any:
    """A request body's JSON: orjson's reading, or, when it may hold a number orjson would
    change (a long run of digits, a three-digit exponent), the exact reading of
    accrual_platform.exactjson. Raises ShimError 400 for text that is not JSON."""
    try:
        return orjson.loads(raw) if not exactjson.needs_exact_reading(raw) else exactjson.loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise ShimError(400, "invalid_json", f"malformed JSON: {exc}",
                        [("body", f"is not valid JSON: {exc}")]) from None


# -- JSON <-> proto ------------------------------------------------------------------------

def _out(value: Any, field: FieldDescriptor) -> Any:
    if is_decimal(field):
        return [decimal_out(v) for v in value] if isinstance(value, list) else decimal_out(value)
    if field.type in _INT64S:  # MessageToDict writes them as strings
        return [int(v) for v in value] if isinstance(value, list) else int(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        def name(v: Any) -> Any:
            if not isinstance(v, str) or v.endswith("_UNSPECIFIED"):
                return None
            return v.removeprefix(enum_prefix(enum_type(field)))
        return [name(v) for v in value] if isinstance(value, list) else name(value)
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_type(field).full_name not in WKT_PASSTHROUGH:
        desc = message_type(field)
        if desc.GetOptions().map_entry:
            return value
        if isinstance(value, list):
            return [shape_output(v, desc) for v in value]
        return shape_output(value, desc)
    return value


def shape_output(data: dict[str, Any], desc: Descriptor) -> dict[str, Any]:
    """Every field present (null when unset), enums unprefixed; a Struct with exact text
    is that text."""
    out: dict[str, Any] = {}
    exact = exact_text_fields(desc)
    for field in desc.fields:
        if is_hidden(field):
            continue
        text = data.get(exact[field.name]) if field.name in exact else None
        if text:
            out[field.name] = orjson.Fragment(text)
        elif field.name in data:
            out[field.name] = _out(data[field.name], field)
        elif field.is_repeated:
            out[field.name] = {} if field.message_type and field.message_type.GetOptions().map_entry else []
        else:
            out[field.name] = None
    return out


def to_json(message: Message) -> dict[str, Any]:
    """The answer's JSON: what ``shape_output`` makes of json_format.MessageToDict (proto
    names, every field present, enums unprefixed), built by converters made once per message
    type. json_format's generic walk took a quarter of the gateway's time on a 1,000-event
    batch (5.4 ms for its 1,000 results, 1.1 ms this way). A message with a field the
    converters do not cover (a well-known type other than WKT_PASSTHROUGH's, a map of
    messages) goes through json_format as before."""
    shaper = _shaper(message.DESCRIPTOR)
    if shaper is None:
        return _to_json_generic(message)
    return shaper(message)  # type: ignore[no-any-return]


def _raw_json(message: Message) -> Any:
    """MessageToDict as the shim prints answers: proto names, fields without presence too."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _to_json_generic(message: Message) -> dict[str, Any]:
    return shape_output(_raw_json(message), descriptor_of(message))


class _Uncovered(Exception):
    """A field type to_json leaves to json_format."""


_INT64S = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_UINT64,
           FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64)


def _float_json(field: FieldDescriptor) -> Any:
    shortest = field.type == FieldDescriptor.TYPE_FLOAT

    def convert(v: float) -> Any:
        if math.isinf(v):
            return "-Infinity" if v < 0 else "Infinity"
        if math.isnan(v):
            return "NaN"
        return type_checkers.ToShortestFloat(v) if shortest else v
    return convert


def _value_json(field: FieldDescriptor, shaped: bool) -> Any:
    """A converter of one value of ``field`` as MessageToDict writes it or, ``shaped``, as
    shape_output then makes it (enum prefix off, ``*_UNSPECIFIED`` and unknown numbers
    null, nested messages shaped); None means "the value as it is"."""
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        assert message_type is not None  # a message field names its type
        full_name = message_type.full_name
        if full_name == "google.protobuf.Timestamp":
            return lambda v: v.ToJsonString()
        if full_name in WKT_PASSTHROUGH:
            return _raw_json
        if full_name.startswith("google.protobuf.") or not shaped:
            raise _Uncovered(full_name)
        inner = _shaper(message_type)
        if inner is None:
            raise _Uncovered(full_name)
        return inner
    if t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field names its type
        if enum.full_name == "google.protobuf.NullValue":
            return lambda v: None
        if shaped:
            prefix = enum_prefix(enum)
            short = {v.number: (None if v.name.endswith("_UNSPECIFIED") else v.name.removeprefix(prefix))
                     for v in enum.values}
            return short.get
        names = {v.number: v.name for v in enum.values}
        return lambda v: names.get(v, v)
    if t == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("utf-8")
    if t in _INT64S:
        return None  # a JSON number: the API's 64-bit fields are counts, below 2**53
    if is_decimal(field):
        return decimal_out
    if t in _FLOATS:
        return _float_json(field)
    if t == FieldDescriptor.TYPE_BOOL:
        return bool
    return None


_SHAPERS: dict[str, Any] = {}


def _shaper(desc: Any) -> Any:
    """The converter of ``desc``'s messages for to_json, made once; None if it has a field
    to_json does not cover (a type that contains itself included)."""
    if desc.full_name in _SHAPERS:
        return _SHAPERS[desc.full_name]
    _SHAPERS[desc.full_name] = None
    exact = exact_text_fields(desc)
    try:
        plan: list[tuple[str, str, Any]] = []
        for field in desc.fields:
            if is_hidden(field):
                continue
            if field.name in exact:
                plan.append((field.name, "exact", (exact[field.name], _value_json(field, True))))
            elif field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                bool_keys = key_field.type == FieldDescriptor.TYPE_BOOL
                plan.append((field.name, "map", (_value_json(value_field, False), bool_keys)))
            elif field.is_repeated:
                plan.append((field.name, "list", _value_json(field, True)))
            elif field.has_presence:
                plan.append((field.name, "optional", _value_json(field, True)))
            else:
                plan.append((field.name, "plain", _value_json(field, True)))
    except _Uncovered:
        return None

    def shape(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, kind, convert in plan:
            if kind == "plain":
                value = getattr(message, name)
                out[name] = value if convert is None else convert(value)
            elif kind == "optional":
                if message.HasField(name):
                    value = getattr(message, name)
                    out[name] = value if convert is None else convert(value)
                else:
                    out[name] = None
            elif kind == "list":
                values = getattr(message, name)
                out[name] = list(values) if convert is None else [convert(v) for v in values]
            elif kind == "exact":
                text_name, struct_convert = convert
                text = getattr(message, text_name)
                if text:  # already JSON: written into the answer as it is
                    out[name] = orjson.Fragment(text)
                else:
                    out[name] = struct_convert(getattr(message, name)) if message.HasField(name) else None
            else:
                value_convert, bool_keys = convert
                out[name] = {(("true" if k else "false") if bool_keys else str(k)):
                             (v if value_convert is None else value_convert(v))
                             for k, v in getattr(message, name).items()}
        return out

    _SHAPERS[desc.full_name] = shape
    return shape


def _in(value: Any, field: FieldDescriptor, path: str) -> Any:
    if value is None:
        return None
    if field.is_repeated and not (
            field.message_type and field.message_type.GetOptions().map_entry):
        if not isinstance(value, list):
            raise ShimError(400, "invalid_argument", f"{path}: must be a list", [(path, "must be a list")])
        return [_in_one(v, field, f"{path}[{i}]") for i, v in enumerate(value)]
    return _in_one(value, field, path)


_STRINGS = (FieldDescriptor.TYPE_STRING,)
_INTS = (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_UINT32,
         FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_UINT64,
         FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
         FieldDescriptor.TYPE_SFIXED64)
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def _bad(path: str, description: str) -> ShimError:
    return ShimError(400, "invalid_argument", f"{path}: {description}", [(path, description)])


def _scalar(value: Any, field: FieldDescriptor, path: str) -> Any:
    """JSON scalars must have the field's type: no silent coercion of 1 to "1" or "1" to true
    (a decimal field takes a number or a string, both meaning a number)."""
    if is_decimal(field):
        return _decimal_in(value, path)
    if field.type in _STRINGS:
        if not isinstance(value, str):
            raise _bad(path, "must be a string")
    elif field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise _bad(path, "must be true or false")
    elif field.type in _INTS:
        is_int = isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value))
        if isinstance(value, bool) or not is_int:
            raise _bad(path, "must be an integer")
    elif field.type in _FLOATS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _bad(path, "must be a number")
    return value


def _timestamp(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            Timestamp().FromJsonString(value)
            return value
        except ValueError:
            pass
    raise _bad(path, "must be an RFC 3339 timestamp with a time zone, e.g. 2024-01-15T10:30:00Z")


def _in_one(value: Any, field: FieldDescriptor, path: str) -> Any:
    if field.type not in (FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_MESSAGE):
        return _scalar(value, field, path)
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_type(field).full_name == "google.protobuf.Timestamp":
        return _timestamp(value, path)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = enum_type(field)
        if isinstance(value, str):
            full = value if value in enum.values_by_name else enum_prefix(enum) + value
            if full in enum.values_by_name and not full.endswith("_UNSPECIFIED"):
                return full
        allowed = [v.name.removeprefix(enum_prefix(enum)) for v in enum.values if v.number]
        raise ShimError(400, "invalid_argument", f"{path}: must be one of {', '.join(allowed)}",
                        [(path, f"must be one of {', '.join(allowed)}")])
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        desc = message_type(field)
        full_name = desc.full_name
        if full_name == "google.protobuf.Struct" and not isinstance(value, dict):
            raise ShimError(400, "invalid_argument", f"{path}: must be a JSON object",
                            [(path, "must be a JSON object")])
        if full_name in WKT_PASSTHROUGH or desc.GetOptions().map_entry:
            return value
        if not isinstance(value, dict):
            raise ShimError(400, "invalid_argument", f"{path}: must be a JSON object",
                            [(path, "must be a JSON object")])
        return shape_input(value, desc, path + ".")
    return value


def shape_input(data: dict[str, Any], desc: Descriptor, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    exact, hidden = _exact_text(desc)
    for key, value in data.items():
        field = desc.fields_by_name.get(key) or _by_json_name(desc).get(key)
        if field is None or field.name in hidden:
            name = prefix + errors.shorten(key)
            raise ShimError(400, "invalid_argument", f"{name}: unknown field", [(name, "unknown field")])
        shaped = _in(value, field, prefix + key)
        if shaped is None:
            continue
        if field.name in exact:
            # The exact text instead of the Struct (whose numbers are doubles).
            out[exact[field.name]] = exactjson.dumps(shaped, sort_keys=False).decode()
        else:
            out[field.name] = shaped
    return out


_json_names: dict[str, dict[str, FieldDescriptor]] = {}


def _by_json_name(desc: Descriptor) -> dict[str, FieldDescriptor]:
    names = _json_names.get(desc.full_name)
    if names is None:
        names = _json_names[desc.full_name] = {f.json_name: f for f in desc.fields}
    return names


class _Unsupported(Exception):
    """A field the direct fill leaves to json_format."""


def _fill(message: Message, shaped: dict[str, Any]) -> None:
    """Set ``shaped`` (checked by shape_input: proto names, JSON types of the fields) on
    ``message`` directly: scalars by setattr, enums by number, Timestamp from its text,
    Struct by update, nested and repeated messages recursively. json_format.ParseDict does
    the same through a generic per-field Python walk, two thirds of the gateway's time on a
    1,000-event batch. Anything else (64-bit or float fields from strings, maps of messages,
    other well-known types) raises _Unsupported, and parse_into leaves the message to
    json_format; so does any value the fill refuses, so errors read as they always did."""
    desc = message.DESCRIPTOR
    for name, value in shaped.items():
        field = desc.fields_by_name[name]
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            raise _Unsupported(name)  # two members of one oneof: json_format names the error
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type != FieldDescriptor.TYPE_STRING:
                raise _Unsupported(name)
            getattr(message, name).update(value)
        elif field.is_repeated:
            target = getattr(message, name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    _fill_message(target.add(), field, item)
            else:
                target.extend(_fill_scalar(field, item) for item in value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill_message(getattr(message, name), field, value)
        else:
            setattr(message, name, _fill_scalar(field, value))


def _fill_message(target: Message, field: Any, value: Any) -> None:
    full_name = field.message_type.full_name
    if full_name == "google.protobuf.Timestamp":
        target.FromJsonString(value)  # type: ignore[attr-defined]
    elif full_name == "google.protobuf.Struct":
        target.SetInParent()
        target.update(value)  # type: ignore[attr-defined]
    elif full_name.startswith("google.protobuf."):
        raise _Unsupported(full_name)
    else:
        target.SetInParent()  # present even when given as {}
        _fill(target, value)


def _fill_scalar(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_name[value].number
    if field.type in _FLOATS or (field.type in _INTS and not isinstance(value, int)):
        raise _Unsupported(field.name)  # NaN/Infinity spellings, integers given as strings
    if field.type == FieldDescriptor.TYPE_BYTES:
        raise _Unsupported(field.name)
    return value


def parse_into(message: Message, data: dict[str, Any], prefix: str = "") -> None:
    shaped = shape_input(data, descriptor_of(message), prefix)
    try:
        _fill(message, shaped)
        return
    except (_Unsupported, ValueError, TypeError, KeyError, AttributeError):
        message.Clear()
    try:
        json_format.ParseDict(shaped, message)
    except json_format.ParseError as exc:
        text = str(exc)
        m = re.search(r'Failed to parse (\w+) field', text)
        field = prefix + (m.group(1) if m else "body")
        raise ShimError(400, "invalid_argument", f"{field}: {text}", [(field, text)]) from None




def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def query_to_dict(desc: Descriptor, items: Sequence[tuple[str, str]], skip: set[str]) -> dict[str, Any]:
    """Query parameters into a request dict, converting scalars by field type."""
    out: dict[str, Any] = {}
    for key, raw in items:
        if key in skip:
            continue
        d: Descriptor | None = desc
        field: FieldDescriptor | None = None
        for part in key.split("."):
            if d is None:
                field = None
                break
            field = d.fields_by_name.get(part) or _by_json_name(d).get(part)
            d = field.message_type if field is not None and field.message_type and \
                field.message_type.full_name not in WKT_PASSTHROUGH else None
        if field is None or is_hidden(field):
            name = errors.shorten(key)
            raise ShimError(400, "invalid_argument", f"{name}: unknown query parameter",
                            [(name, "unknown query parameter")])
        value: Any = raw
        if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
                          FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT64,
                          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64):
            try:
                value = int(raw)
            except ValueError:
                raise ShimError(400, "invalid_argument", f"{key}: must be an integer",
                                [(key, "must be an integer")]) from None
        elif field.type == FieldDescriptor.TYPE_BOOL:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ShimError(400, "invalid_argument", f"{key}: must be true or false",
                                [(key, "must be true or false")])
            value = raw.lower() in ("true", "1")
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            try:
                value = float(raw)
            except ValueError:
                raise ShimError(400, "invalid_argument", f"{key}: must be a number",
                                [(key, "must be a number")]) from None
        if field.is_repeated:
            existing = out
            for part in key.split(".")[:-1]:
                existing = existing.setdefault(part, {})
            existing.setdefault(key.split(".")[-1], []).append(value)
        else:
            set_path(out, key, value)
    return out



def dumps(data: Any) -> bytes:
    return orjson.dumps(data)

