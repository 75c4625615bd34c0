"""Who is the person behind an event: precedence over identifiers that may disagree.

A batch is planned in memory against what the database said before any write: an explicit
participant id wins; otherwise the highest-precedence identifier that already belongs to
someone decides. Identifiers nobody owns attach to the winner; an owned one never moves
(merges are explicit). Items are planned in order and each sees what earlier items of the
batch attached, so two events of one batch for the same new person create one participant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from accrual_identity.domain.identities import Identity, by_precedence

PARTICIPANT_NOT_FOUND = "participant_not_found"
INVALID_IDENTITY = "invalid_identity"
INVALID_ARGUMENT = "invalid_argument"


@dataclass(frozen=True)
class Subject:
    """One person to resolve, identifiers already normalised."""

    participant_id: str | None
    identities: tuple[Identity, ...]
    create_unknown: bool


@dataclass(frozen=True)
class Decision:
    participant_id: str = ""
    created: bool = False
    #: identifiers this decision claims for the participant (to be inserted)
    attach: tuple[Identity, ...] = ()
    error_code: str = ""
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_code


def plan(subjects: Sequence[Subject], participants: Mapping[str, str],
         owners: Mapping[Identity, str], new_id: Callable[[], str]) -> list[Decision]:
    """Decide every subject in order.

    ``participants`` maps each known participant id to its survivor (itself unless merged);
    ``owners`` maps each owned identity to its owner's survivor; ``new_id`` names a
    participant to create.
    """
    owned = dict(owners)
    decisions = []
    for subject in subjects:
        created = False
        if subject.participant_id is not None:
            winner = participants.get(subject.participant_id)
            if winner is None:
                decisions.append(Decision(
                    error_code=PARTICIPANT_NOT_FOUND,
                    error_message=f"participant {subject.participant_id} does not exist"))
                continue
        else:
            winner = next((owned[i] for i in by_precedence(subject.identities) if i in owned),
                          None)
            if winner is None:
                if not subject.identities:
                    decisions.append(Decision(
                        error_code=INVALID_IDENTITY,
                        error_message="participant_id or at least one identity is required"))
                    continue
                if not subject.create_unknown:
                    decisions.append(Decision(
                        error_code=PARTICIPANT_NOT_FOUND,
                        error_message="no participant has these identities and the program "
                                      "does not create unknown participants"))
                    continue
                winner, created = new_id(), True
        attach = tuple(i for i in dict.fromkeys(subject.identities) if i not in owned)
        for ident in attach:
            owned[ident] = winner
        decisions.append(Decision(participant_id=winner, created=created, attach=attach))
    return decisions
