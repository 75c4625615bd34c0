"""Seed 001's formulas use the multiplication sign; they are saved with ``*``, and strings
that contain the sign keep it."""

from __future__ import annotations

import decimal

import pytest
from accrual_rules.domain.expressions import compile_expression, normalised, to_decimal

T = "\N{MULTIPLICATION SIGN}"


@pytest.mark.parametrize(("printed", "saved"), [
    (f"properties.amount {T} 1", "properties.amount * 1"),
    (f"properties.amount {T} 1 + (properties.amount > 100 ? 50 : 0)",
     "properties.amount * 1 + (properties.amount > 100 ? 50 : 0)"),
    (f"properties.amount {T} 2", "properties.amount * 2"),
    (f'properties.label == "2{T}4" ? 3{T}2 : 1', f'properties.label == "2{T}4" ? 3*2 : 1'),
    (f"properties.tag == '{T}' ? 1 : 0", f"properties.tag == '{T}' ? 1 : 0"),
    ("properties.amount * 1", "properties.amount * 1"),
])
def test_the_multiplication_sign_is_saved_as_a_star_outside_strings(printed: str, saved: str) -> None:
    assert normalised(printed) == saved


def test_seed_001_tiered_formula_gives_the_printed_points() -> None:
    formula = compile_expression(normalised(f"properties.amount {T} 1 + (properties.amount > 100 ? 50 : 0)"))
    assert to_decimal(formula.evaluate({"properties": {"amount": 50}})) == decimal.Decimal(50)
    assert to_decimal(formula.evaluate({"properties": {"amount": 150}})) == decimal.Decimal(200)
