"""The shared page-token codec: what it encodes comes back, anything else is a 400."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from accrual_platform import errors, pages
from hypothesis import given
from hypothesis import strategies as st

KEYS = pages.Codec("keys", pages.text(36))
IDS = pages.Codec("ids", pages.uuid_key)
TIMES = pages.Codec("times", pages.timestamp, pages.uuid_key)


@given(key=st.one_of(st.uuids().map(str), st.text(
    alphabet=st.characters(categories=["L", "N", "P"]), min_size=1, max_size=36)))
def test_a_token_gives_back_the_key_it_was_made_from(key: str) -> None:
    assert KEYS.decode(KEYS.encode(key)) == (key,)


def test_a_timestamp_and_id_key_round_trips() -> None:
    at = dt.datetime(2026, 5, 1, 12, 30, 1, 123456, tzinfo=dt.UTC)
    row = str(uuid.uuid4())
    assert TIMES.decode(TIMES.encode(at, row)) == (at, row)


def _refused(codec: pages.Codec, token: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        codec.decode(token)
    assert [v.field for v in info.value.violations] == ["page_token"]


def test_tokens_of_another_list_or_shape_are_refused() -> None:
    row = str(uuid.uuid4())
    at = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    # another list's token, even of the same shape
    _refused(KEYS, IDS.encode(row))
    _refused(IDS, pages.Codec("other ids", pages.uuid_key).encode(row))
    _refused(TIMES, IDS.encode(row))
    # a naive timestamp, a non-UUID id, an empty, unprintable or too long key
    _refused(TIMES, pages.Codec("times", pages.text(), pages.text()).encode(at.replace(tzinfo=None).isoformat(), row))
    _refused(IDS, pages.Codec("ids", pages.text()).encode("abc"))
    for key in ("", "a\x00b", "x" * 37):
        _refused(KEYS, pages.Codec("keys", str).encode(key))
    # the old spellings: plain base64 of the key, padded or not
    _refused(IDS, base64.urlsafe_b64encode(row.encode()).decode())
    _refused(KEYS, base64.urlsafe_b64encode(b'["keys"]').decode().rstrip("="))
    for junk in ("!", "%%%", "not a token", "=", "a" * 2000, "e30", "W10"):
        _refused(KEYS, junk)


@given(token=st.text(max_size=80))
def test_any_other_token_is_a_400_naming_page_token(token: str) -> None:
    try:
        (key,) = KEYS.decode(token)
    except errors.InvalidArgument as exc:
        assert [v.field for v in exc.violations] == ["page_token"]
    else:
        assert 0 < len(key) <= 36 and key.isprintable()


def test_an_absent_token_is_the_first_page() -> None:
    assert KEYS.decode_optional("") is None
