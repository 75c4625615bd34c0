"""Dramatiq actors of the ``ingest`` queue.

Thin on purpose: bind the log context, hand on. A payload that cannot be decoded is
dead-lettered by :func:`accrual_platform.contract.declare`, not retried. The actor's name
and message are part of the queue contract (:mod:`accrual_platform.contract`).
"""

from __future__ import annotations

import dramatiq
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract
from accrual_platform.logging import bind_subject

from accrual_ingest.service import IngestService


def declare_actors(broker: dramatiq.Broker, service: IngestService) -> None:
    def record_outcomes(msg: messages_pb2.EventOutcomes) -> None:
        """Store the rules worker's outcomes of events (once each), with their webhooks and analytics."""
        bind_subject(tenant_ids=(o.tenant_id for o in msg.outcomes),
                     event_ids=(o.event_id for o in msg.outcomes))
        service.record_outcomes(list(msg.outcomes))

    contract.declare(broker, contract.RECORD_OUTCOMES, record_outcomes)
