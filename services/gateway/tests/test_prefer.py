"""``Prefer: wait=N`` (RFC 7240) as the gateway reads it."""

from __future__ import annotations

import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual_gateway import prefer


@pytest.mark.parametrize(("headers", "expected"), [
    ([], None),
    (["wait=5"], 5),
    (["WAIT = 3"], 3),
    (['wait="7"'], 7),
    (["respond-async, wait=4"], 4),
    (["respond-async", "wait=2"], 2),
    (["wait=2; foo=bar"], 2),
    (['foo="a,wait=9", wait=1'], 1),
    (["wait=100"], 10),
    (["wait=0"], 0),
    (["wait=1, wait=8"], 1),  # only the first instance counts
    (["wait=soon"], None),
    (["wait=-1"], None),
    (["wait=1.5"], None),
    (["wait"], None),
    (["wait=٣"], None),  # digits other than ASCII ones
    (["handling=lenient"], None),
])
def test_wait_preference(headers: list[str], expected: int | None) -> None:
    assert prefer.wait_preference(headers) == expected


def test_apply_wait_sets_the_field_of_messages_that_have_it() -> None:
    submit = ingest_pb2.SubmitEventRequest()
    assert prefer.apply_wait(submit, ["wait=30"]) == 10 and submit.wait_seconds == 10
    assert prefer.apply_wait(ingest_pb2.SubmitEventRequest(), ["wait=nope"]) == 0
    other = ingest_pb2.GetEventRequest()
    assert prefer.apply_wait(other, ["wait=5"]) == 0
