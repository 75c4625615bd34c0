"""Request checks shared by the identity use cases: ids and page sizes (pure, no server)."""

from __future__ import annotations

import uuid

import pytest
from accrual_identity.validation import MAX_PAGE_SIZE, page_size
from accrual_platform import errors
from accrual_platform.ids import require_uuid


def test_require_uuid_canonicalises_and_names_the_field() -> None:
    raw = uuid.uuid4()
    assert require_uuid(str(raw).upper(), "participant_id") == str(raw)
    assert require_uuid(raw.hex, "participant_id") == str(raw)
    for bad in ("", "nope", str(raw) + "0"):
        with pytest.raises(errors.InvalidArgument) as info:
            require_uuid(bad, "program_id")
        assert [v.field for v in info.value.violations] == ["program_id"]


def test_page_size_defaults_and_bounds() -> None:
    assert page_size(0) == 50
    assert page_size(1) == 1 and page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE
    for bad in (-1, MAX_PAGE_SIZE + 1):
        with pytest.raises(errors.InvalidArgument) as info:
            page_size(bad)
        assert [v.field for v in info.value.violations] == ["page_size"]
