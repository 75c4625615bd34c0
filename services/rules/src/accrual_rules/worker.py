"""Dramatiq actors of the ``rules`` queue.

Thin on purpose: decode the payload, bind the log context, hand on. A payload that cannot
be decoded is dead-lettered by :func:`accrual_platform.contract.declare`, not retried.
The actors' names and messages are part of the queue contract (:mod:`accrual_platform.contract`).
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract
from accrual_platform.logging import bind_subject

from accrual_rules.processing import Processor


def declare_actors(broker: dramatiq.Broker, processor: Callable[[], Processor],
                   merge: Callable[[messages_pb2.ParticipantsMerged], None]) -> None:
    """``processor`` gives the worker's Processor (built on first use: only workers need the
    peer channels); ``merge`` moves the ledgers of a participant merge."""

    def evaluate_events(msg: messages_pb2.EventsAccepted) -> None:
        """Evaluate a batch of accepted events of one tenant."""
        bind_subject(tenant_ids=[msg.tenant_id])
        processor().process(msg.tenant_id, list(msg.event_ids))

    def merge_ledgers(msg: messages_pb2.ParticipantsMerged) -> None:
        """Move the merged participant's balances to the survivor."""
        bind_subject(tenant_ids=[msg.tenant_id])
        merge(msg)

    contract.declare(broker, contract.EVALUATE_EVENTS, evaluate_events)
    contract.declare(broker, contract.MERGE_LEDGERS, merge_ledgers)
