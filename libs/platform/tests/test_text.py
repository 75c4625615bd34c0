"""The shared rule for control characters in names and descriptions."""

from __future__ import annotations

import unicodedata

import pytest
from accrual_platform import errors, text
from hypothesis import given
from hypothesis import strategies as st

CONTROLS = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"]


@pytest.mark.parametrize("ch", CONTROLS)
def test_names_refuse_every_control_character_naming_it(ch: str) -> None:
    v: list[errors.FieldViolation] = []
    text.check_name(v, "name", f"ab{ch}c")
    assert v == [errors.FieldViolation(
        "name", f"must not contain control characters (U+{ord(ch):04X} at position 2)")]


@pytest.mark.parametrize("ch", ["\t", "\n", "\r"])
def test_descriptions_keep_tab_and_newlines(ch: str) -> None:
    v: list[errors.FieldViolation] = []
    text.check_text(v, "description", f"line one{ch}line two")
    assert v == []


@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\x7f", "\x85", "\x0b", "\x0c"])
def test_descriptions_refuse_other_control_characters(ch: str) -> None:
    v: list[errors.FieldViolation] = []
    text.check_text(v, "description", f"x{ch}")
    assert [x.field for x in v] == ["description"]


@pytest.mark.parametrize("value", ["Gold tier", "Éclair 🍰 \u00d72", "名前", "a\u00a0b", ""])
def test_ordinary_names_pass(value: str) -> None:
    v: list[errors.FieldViolation] = []
    text.check_name(v, "name", value)
    assert v == [] and not text.has_control_chars(value)


@given(st.text(max_size=40))
def test_names_refuse_exactly_category_cc(value: str) -> None:
    expected = any(unicodedata.category(ch) == "Cc" for ch in value)
    assert text.has_control_chars(value) == expected
    assert (text.control_problem(value) is not None) == expected
