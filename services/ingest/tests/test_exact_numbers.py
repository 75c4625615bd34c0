"""Numbers in event_data are kept exactly (issue 18, finding 9): on REST and gRPC, single,
batch and CDP intake, in the stored event, the idempotency comparison, GET and lists, and
the claim the rules worker reads; on SQLite and PostgreSQL."""

from __future__ import annotations

import decimal
import json
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import httpx
from accrual.ingest.v1 import ingest_pb2
from accrual_platform import structs

if TYPE_CHECKING:
    from conftest import Stack

PROGRAM = "550e8400-e29b-41d4-a716-446655440000"
SCOPES = frozenset({"events:write", "events:read", "programs:write"})
BIG = "9007199254740993"  # 2**53 + 1: the double nearest to it is 2**53
NEAR = "9007199254740992"
LONG_DECIMAL = "1.2345678901234567890123456789012345"


def exact(response: httpx.Response) -> Any:
    """A response's JSON with its numbers as written: ints, decimals as Decimal."""
    return json.loads(response.text, parse_float=decimal.Decimal)


def event_text(key: str, event_data: str, **kw: str) -> str:
    """A SubmitEvent body as text, so the numbers are exactly the ones written."""
    fields = {"program_id": PROGRAM, "idempotency_key": key, "external_id": "user_1",
              "event_type": "purchase", **kw}
    return json.dumps(fields)[:-1] + f', "event_data": {event_data}}}'


def post(c: httpx.Client, path: str, text: str) -> httpx.Response:
    return c.post(path, content=text, headers={"Content-Type": "application/json"})


def test_integers_beyond_doubles_make_a_conflict_not_a_duplicate(stack: Stack) -> None:
    key, tenant = stack.tenant(SCOPES)
    idem = f"k-{uuid.uuid4()}"
    with stack.http(key) as c:
        first = post(c, "/v1/events", event_text(idem, f'{{"n": {BIG}}}'))
        assert first.status_code == 200, first.text
        assert exact(first)["event_data"] == {"n": int(BIG)}
        again = post(c, "/v1/events", event_text(idem, f'{{"n": {BIG}}}'))
        assert again.status_code == 200 and again.json()["deduplicated"] is True
        other = post(c, "/v1/events", event_text(idem, f'{{"n": {NEAR}}}'))
        assert other.status_code == 409, other.text
        assert other.json()["error"]["code"] == "idempotency_conflict"
        # The same number written as a decimal is the same payload.
        assert post(c, "/v1/events", event_text(idem, f'{{"n": {BIG}.000}}')).json()["deduplicated"] is True
        got = c.get(f"/v1/events/{exact(first)['event_id']}")
    assert f'"n":{BIG}' in got.text and exact(got)["event_data"] == {"n": int(BIG)}
    assert stack.count(tenant) == 1


def test_integers_come_back_as_integers_in_answers_get_and_lists(stack: Stack) -> None:
    key, _ = stack.tenant(SCOPES)
    with stack.http(key) as c:
        r = post(c, "/v1/events", event_text(f"k-{uuid.uuid4()}", '{"amount": 125, "whole": 7.0}'))
        assert r.status_code == 200, r.text
        assert '"event_data":{"amount":125,"whole":7}' in r.text
        got = c.get(f"/v1/events/{r.json()['event_id']}")
        listed = c.get("/v1/events", params={"program_id": PROGRAM})
    assert '"amount":125,' in got.text and '"amount":125.0' not in got.text
    event = next(e for e in listed.json()["events"] if e["event_id"] == r.json()["event_id"])
    assert event["event_data"] == {"amount": 125, "whole": 7}
    assert type(event["event_data"]["amount"]) is int
    assert "event_data_json" not in event  # the transport's field, not the API's


def test_trailing_zeros_are_one_number_and_read_back_one_way(stack: Stack) -> None:
    key, _ = stack.tenant(SCOPES)
    idem = f"k-{uuid.uuid4()}"
    with stack.http(key) as c:
        first = post(c, "/v1/events", event_text(idem, '{"price": 1.10}'))
        assert first.status_code == 200, first.text
        assert exact(first)["event_data"] == {"price": decimal.Decimal("1.1")}
        assert '"price":1.1}' in first.text
        assert post(c, "/v1/events", event_text(idem, '{"price": 1.1}')).json()["deduplicated"] is True
        assert post(c, "/v1/events", event_text(idem, '{"price": 1.100000}')).json()["deduplicated"] is True
        assert post(c, "/v1/events", event_text(idem, '{"price": 1.11}')).status_code == 409
        assert '"price":1.1}' in c.get(f"/v1/events/{first.json()['event_id']}").text


def test_big_decimals_nested_objects_and_arrays_are_exact(stack: Stack) -> None:
    key, tenant = stack.tenant(SCOPES)
    idem = f"k-{uuid.uuid4()}"
    data = (f'{{"order": {{"lines": [{{"price": {LONG_DECIMAL}, "qty": 2}}, {{"price": 0.1, "qty": {BIG}}}],'
            f' "total": 123456789012345678901234567890.5, "tiny": 1e-300, "wide": 18446744073709551616}},'
            ' "tags": ["a", 1, 2.50, [3, {"deep": 12345678901234567890123}]]}')
    expected = {"order": {"lines": [{"price": decimal.Decimal(LONG_DECIMAL), "qty": 2},
                                    {"price": decimal.Decimal("0.1"), "qty": int(BIG)}],
                          "total": decimal.Decimal("123456789012345678901234567890.5"),
                          "tiny": decimal.Decimal("1E-300"), "wide": 18446744073709551616},
                "tags": ["a", 1, decimal.Decimal("2.5"), [3, {"deep": 12345678901234567890123}]]}
    with stack.http(key) as c:
        first = post(c, "/v1/events", event_text(idem, data))
        assert first.status_code == 200, first.text
        assert exact(first)["event_data"] == expected
        got = c.get(f"/v1/events/{first.json()['event_id']}")
        assert exact(got)["event_data"] == expected
        # A difference in the 35th digit, deep in an array, is another payload.
        changed = data.replace(LONG_DECIMAL, LONG_DECIMAL[:-1] + "6")
        assert post(c, "/v1/events", event_text(idem, changed)).status_code == 409
        assert post(c, "/v1/events", event_text(idem, data)).json()["deduplicated"] is True
    # The claim the rules worker reads carries the exact text; the worker's expressions get
    # integers as integers and decimals as the doubles they read as.
    claimed = stack.claim(tenant, [first.json()["event_id"]])[0]
    assert json.loads(claimed.event_data_json, parse_float=decimal.Decimal) == expected
    properties = structs.text_or_struct(claimed.event_data_json, claimed.event_data)
    assert properties["order"]["lines"] == [{"price": float(LONG_DECIMAL), "qty": 2}, {"price": 0.1, "qty": int(BIG)}]
    assert properties["tags"][1:3] == [1, 2.5] and type(properties["tags"][1]) is int
    # gRPC readers of the Struct get the nearest doubles.
    assert claimed.event_data["order"]["total"] == 1.2345678901234568e29


def test_numbers_beyond_a_doubles_exponent_are_400_naming_the_field(stack: Stack) -> None:
    key, tenant = stack.tenant(SCOPES)
    with stack.http(key) as c:
        r = post(c, "/v1/events", event_text(f"k-{uuid.uuid4()}", '{"a": {"b": 1e-999}}'))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["details"][0]["field"] == "event_data.a.b"
        huge = post(c, "/v1/events", event_text(f"k-{uuid.uuid4()}", '{"a": 1e999}'))
        assert huge.status_code == 400
        assert post(c, "/v1/events", '{"event_data": {"a": NaN}}').status_code == 400
    assert stack.count(tenant) == 0


def test_batch_items_compare_exactly(stack: Stack) -> None:
    key, tenant = stack.tenant(SCOPES)
    idem = f"k-{uuid.uuid4()}"
    items = [event_text(idem, f'{{"n": {BIG}}}'), event_text(idem, f'{{"n": {NEAR}}}'),
             event_text(idem, f'{{"n": {BIG}.0}}'), event_text(f"k-{uuid.uuid4()}", f'{{"x": {LONG_DECIMAL}}}')]
    with stack.http(key) as c:
        r = post(c, "/v1/events/batch", '{"events": [' + ", ".join(items) + "]}")
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["status"] for x in results] == ["accepted", "error", "duplicate", "accepted"]
        assert results[1]["error"]["code"] == "idempotency_conflict"
        got = exact(c.get(f"/v1/events/{results[3]['event_id']}"))
        assert got["event_data"] == {"x": decimal.Decimal(LONG_DECIMAL)}
        again = post(c, "/v1/events/batch", '{"events": [' + event_text(idem, f'{{"n": {NEAR}}}') + "]}")
    assert again.json()["results"][0]["error"]["code"] == "idempotency_conflict"
    assert stack.count(tenant) == 2


def test_cdp_properties_compare_exactly_single_and_batch(stack: Stack) -> None:
    key, _ = stack.tenant(SCOPES)

    def cdp(event_id: str, amount: str, count: str = "3") -> str:
        head = json.dumps({"source": "pos", "externalEventId": event_id, "eventType": "buy",
                           "identity": {"externalUserId": "u1"}})
        return head[:-1] + f', "properties": {{"amount": {amount}, "count": {count}}}}}'


    with stack.http(key) as c:
        assert c.post("/v1/cdp/event-types", json={"name": "buy", "properties": [
            {"name": "amount", "type": "NUMBER", "required": True},
            {"name": "count", "type": "INTEGER"}]}).status_code == 200
        first = post(c, "/v1/cdp/events", cdp("e1", BIG))
        assert first.status_code == 200 and first.json()["status"] == "accepted", first.text
        conflict = post(c, "/v1/cdp/events", cdp("e1", NEAR))
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
        assert post(c, "/v1/cdp/events", cdp("e1", BIG)).json()["status"] == "duplicate"
        stored = c.get(f"/v1/events/{first.json()['event_id']}")
        assert exact(stored)["event_data"] == {"amount": int(BIG), "count": 3}
        # An integral decimal is an INTEGER; a big one too.
        items = [cdp("e2", LONG_DECIMAL, "3.0"), cdp("e1", NEAR), cdp("e3", "1", "123456789012345678901234"),
                 cdp("e4", "1", "2.5")]
        batch = post(c, "/v1/cdp/events/batch", '{"items": [' + ", ".join(items) + "]}")
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        assert [r["status"] for r in results] == ["accepted", "error", "accepted", "error"]
        assert results[1]["error_code"] == "idempotency_conflict"
        assert results[3]["details"][0]["field"] == "items[3].properties.count"
        stored = exact(c.get(f"/v1/events/{results[0]['event_id']}"))
    assert stored["event_data"] == {"amount": decimal.Decimal(LONG_DECIMAL), "count": 3}


def test_grpc_struct_partners_keep_working_and_may_send_exact_text(stack: Stack) -> None:
    key, tenant = stack.tenant(SCOPES)
    md = stack.md(key)
    # A Struct is doubles: what a Struct partner sends is what they get.
    via_struct = stack.stub.SubmitEvent(ingest_pb2.SubmitEventRequest(
        program_id=PROGRAM, idempotency_key="s-1", external_id="u1", event_data={"amount": 125, "p": 1.5}),
        metadata=md)
    assert via_struct.event_data_json == '{"amount":125,"p":1.5}'
    assert via_struct.event_data["amount"] == 125
    # The exact text: kept exactly, compared exactly.
    req = ingest_pb2.SubmitEventRequest(program_id=PROGRAM, idempotency_key="t-1", external_id="u1",
                                        event_data_json=f'{{"n": {BIG}, "d": {LONG_DECIMAL}}}')
    first = stack.stub.SubmitEvent(req, metadata=md)
    assert first.event_data_json == f'{{"d":{LONG_DECIMAL},"n":{BIG}}}'
    assert stack.stub.SubmitEvent(req, metadata=md).deduplicated
    req.event_data_json = f'{{"n": {NEAR}, "d": {LONG_DECIMAL}}}'
    conflict = stack.failure(lambda: stack.stub.SubmitEvent(req, metadata=md))
    assert conflict.code == grpc.StatusCode.ABORTED and conflict.reason == "IDEMPOTENCY_CONFLICT"
    got = stack.stub.GetEvent(ingest_pb2.GetEventRequest(event_id=first.event_id), metadata=md)
    assert got.event_data_json == first.event_data_json and got.event_data["n"] == float(BIG)
    for text, reason in [("[1]", "must be a JSON object"), ("{", "not JSON"), ('{"a": NaN}', "not JSON")]:
        bad = ingest_pb2.SubmitEventRequest(program_id=PROGRAM, idempotency_key="t-2", external_id="u1",
                                            event_data_json=text)
        failure = stack.failure(lambda bad=bad: stack.stub.SubmitEvent(bad, metadata=md))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.fields == ["event_data"], reason
    both = ingest_pb2.SubmitEventRequest(program_id=PROGRAM, idempotency_key="t-3", external_id="u1",
                                         event_data={"a": 1}, event_data_json='{"a": 1}')
    failure = stack.failure(lambda: stack.stub.SubmitEvent(both, metadata=md))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.fields == ["event_data"]
    batch = stack.stub.BatchSubmitEvents(ingest_pb2.BatchSubmitEventsRequest(events=[
        ingest_pb2.SubmitEventRequest(program_id=PROGRAM, idempotency_key="t-1", external_id="u1",
                                      event_data_json=f'{{"d": {LONG_DECIMAL}, "n": {BIG}.0}}')]), metadata=md)
    assert batch.results[0].status == "duplicate"
    assert stack.count(tenant) == 2


def test_rest_clients_cannot_send_the_text_field(stack: Stack) -> None:
    key, _ = stack.tenant(SCOPES)
    with stack.http(key) as c:
        r = post(c, "/v1/events", event_text(f"k-{uuid.uuid4()}", "{}")[:-1] + ', "event_data_json": "{}"}')
        assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "event_data_json"
        spec = c.get("/openapi.json").json()
    assert "event_data_json" not in json.dumps(spec) and "properties_json" not in json.dumps(spec)
