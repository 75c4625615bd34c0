"""Decimal fields (``(accrual.options.v1.decimal)``) take a JSON number or a decimal string,
exactly, and are answered as JSON numbers written from their text; 64-bit counts are JSON
numbers (issue 20, item 4)."""

from __future__ import annotations

import decimal
import json
from typing import Any

import pytest
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_gateway import codec, openapi, routing
from accrual_gateway.errors import ShimError
from google.protobuf.descriptor import FieldDescriptor

FILES = (ingest_pb2.DESCRIPTOR, identity_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
         rewards_pb2.DESCRIPTOR, notify_pb2.DESCRIPTOR)


def amount_of(body: str) -> str:
    request = rules_pb2.CreateAdjustmentRequest()
    codec.parse_into(request, codec.parse_body(body.encode()))
    return str(request.amount)


def exact(data: Any) -> Any:
    return json.loads(codec.dumps(data), parse_float=decimal.Decimal)


@pytest.mark.parametrize(("sent", "text"), [
    ("25", "25"), ('"25"', "25"), ("0.1", "0.1"), ('"0.1"', "0.1"), ("1e-7", "0.0000001"),
    ("1E-7", "0.0000001"), ("12345678901234567890.5", "12345678901234567890.5"),
    ('"12345678901234567890.5"', "12345678901234567890.5"), ("-20.5", "-20.5"), ('"+50"', "+50"),
    ("-3", "-3"), ("0.30000000000000004", "0.30000000000000004"), ("125.0", "125.0"),
    ("1.2345678901234567890123456789", "1.2345678901234567890123456789"), ("1e22", "10000000000000000000000"),
])
def test_a_decimal_field_takes_a_number_or_a_string_exactly(sent: str, text: str) -> None:
    assert amount_of(f'{{"amount": {sent}}}') == text
    assert decimal.Decimal(amount_of(f'{{"amount": {sent}}}')) == decimal.Decimal(json.loads(
        sent, parse_float=decimal.Decimal, parse_int=decimal.Decimal) if not sent.startswith('"')
        else json.loads(sent))


@pytest.mark.parametrize("sent", ['"lots"', '"NaN"', '"Infinity"', '"1_000"', '"1,5"', "true", "[1]", "{}",
                                  '"12.5 points"'])
def test_anything_else_is_400_naming_the_field(sent: str) -> None:
    with pytest.raises(ShimError) as info:
        amount_of(f'{{"amount": {sent}}}')
    assert info.value.status == 400
    assert info.value.violations[0][0] == "amount" and "decimal number" in info.value.violations[0][1]


def test_nested_and_repeated_decimal_fields_are_named_with_their_path() -> None:
    request = rules_pb2.CreateProgramRequest()
    codec.parse_into(request, {"name": "p", "tiers": [{"name": "a", "min_lifetime_points": 0, "multiplier": 1.5}]})
    assert (request.tiers[0].min_lifetime_points, request.tiers[0].multiplier) == ("0", "1.5")
    with pytest.raises(ShimError) as info:
        codec.parse_into(rules_pb2.CreateProgramRequest(), {"name": "p", "tiers": [{"multiplier": "x"}]})
    assert info.value.violations[0][0] == "tiers[0].multiplier"


@pytest.mark.parametrize("to_json", [codec.to_json, codec._to_json_generic])
def test_decimal_fields_are_answered_as_json_numbers_from_their_text(to_json: Any) -> None:
    balance = rules_pb2.Balance(available="125", lifetime_earned="12345678901234567890.5")
    out = to_json(balance)
    assert codec.dumps(out).startswith(
        b'{"program_id":"","participant_id":"","available":125,"lifetime_earned":12345678901234567890.5')
    assert exact(to_json(rules_pb2.Transaction(amount="-0.0000001")))["amount"] == decimal.Decimal("-1E-7")
    # Text that is not JSON's spelling of a number is written as the same number.
    assert codec.dumps(to_json(rules_pb2.Transaction(amount="+50"))["amount"]) == b"50"
    assert codec.dumps(to_json(rules_pb2.Transaction(amount=".5"))["amount"]) == b"0.5"
    assert to_json(rules_pb2.Transaction(amount=""))["amount"] is None
    event = to_json(ingest_pb2.Event(points_awarded="262.5"))
    assert codec.dumps(event["points_awarded"]) == b"262.5"
    assert to_json(ingest_pb2.Event())["points_awarded"] is None


@pytest.mark.parametrize("to_json", [codec.to_json, codec._to_json_generic])
def test_counts_are_json_numbers(to_json: Any) -> None:
    analytics = ingest_pb2.ProgramAnalytics(
        total_events=2**40, active_participants=3, total_points="7.5",
        events_by_type=[ingest_pb2.EventTypeStats(event_type="x", events=2, points="1")])
    out = exact(to_json(analytics))
    assert out["total_events"] == 2**40 and out["active_participants"] == 3
    assert out["total_points"] == decimal.Decimal("7.5")
    assert out["events_by_type"] == [{"event_type": "x", "events": 2, "points": 1}]


def _fields(desc: Any, seen: set[str]) -> list[FieldDescriptor]:
    if desc.full_name in seen:
        return []
    seen.add(desc.full_name)
    found = list(desc.fields)
    for field in desc.fields:
        if field.message_type is not None and field.message_type.full_name.startswith("accrual."):
            found += _fields(field.message_type, seen)
    return found


def test_the_apis_64_bit_fields_are_counts_and_its_points_are_decimal() -> None:
    """int64 fields are written as JSON numbers because they are counts, far below 2**53: a
    new 64-bit field that is not a count must be reviewed against that policy."""
    seen: set[str] = set()
    fields = [f for r in routing.build_routes(FILES)
              for f in _fields(r.method.output_type, seen) + _fields(r.method.input_type, seen)]
    wide = {f.full_name for f in fields if f.type in codec._INT64S}
    assert wide == {f"accrual.ingest.v1.{name}" for name in (
        "EventsPerParticipantBucket.participants", "EventTypeStats.events", "RuleStats.matches",
        "DailyStats.events", "ParticipantStats.events", "ProgramAnalytics.total_events",
        "ProgramAnalytics.active_participants", "Segment.count")} | {
        f"accrual.rules.v1.{name}.stock" for name in ("Reward", "CreateRewardRequest", "UpdateRewardRequest")}
    # Every string field named like an amount of points is marked decimal.
    pointy = {f.full_name for f in fields if f.type == FieldDescriptor.TYPE_STRING
              and any(w in f.name for w in ("points", "amount", "multiplier", "available", "budget",
                                             "per_participant_", "lifetime_earned"))}
    assert pointy and all(codec.is_decimal(f) for f in fields if f.full_name in pointy)


def test_openapi_describes_decimals_and_counts_as_numbers() -> None:
    doc = openapi.build_openapi(routing.build_routes(FILES))
    schemas = doc["components"]["schemas"]

    def prop(schema: str, name: str) -> Any:
        found = dict(schemas[schema]["properties"][name])
        found.pop("description", None)
        return found

    assert prop("Balance", "available") == {"type": "number"}
    assert prop("Transaction", "amount") == {"type": "number"}
    assert prop("CreateAdjustmentRequest_Body", "amount")["anyOf"][0] == {"type": "number"}
    assert prop("CreateAdjustmentRequest_Body", "amount")["anyOf"][1]["type"] == "string"
    assert prop("Tier", "multiplier")["anyOf"][0] == {"type": "number"}  # in requests and answers
    assert prop("ProgramAnalytics", "total_events") == {"type": "integer", "format": "int64"}
