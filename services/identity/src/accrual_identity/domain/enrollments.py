"""Enrollment statuses and what resolving an event does to them.

An event always leaves its participant actively enrolled in the event's program (seed 000):
a missing enrollment is created and a FROZEN, LOCKED or CLOSED one is reactivated. Within a
batch only the first item for a (program, participant) reports the change, so the change is
announced once, and replaying the batch reports NONE.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum

Pair = tuple[str, str]  # (program_id, participant_id)


class EnrollmentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    LOCKED = "LOCKED"
    CLOSED = "CLOSED"


INACTIVE = frozenset({EnrollmentStatus.FROZEN, EnrollmentStatus.LOCKED, EnrollmentStatus.CLOSED})


class EnrollmentChange(StrEnum):
    NONE = "NONE"
    CREATED = "CREATED"
    REACTIVATED = "REACTIVATED"


def changes(pairs: Sequence[Pair | None], created: Collection[Pair],
            reactivated: Collection[Pair]) -> list[EnrollmentChange | None]:
    """Per item (None for an item that resolved to nobody), what happened to its enrollment."""
    reported: set[Pair] = set()
    result: list[EnrollmentChange | None] = []
    for pair in pairs:
        if pair is None:
            result.append(None)
            continue
        change = EnrollmentChange.NONE
        if pair not in reported:
            if pair in created:
                change = EnrollmentChange.CREATED
            elif pair in reactivated:
                change = EnrollmentChange.REACTIVATED
        reported.add(pair)
        result.append(change)
    return result
