"""Ledger side of a participant merge: every program balance of the merged participant moves
to the survivor, once per merge.

Per program, one transaction locks both balance rows (in participant-id order), appends a
REVERSAL on the merged participant and a matching ADJUSTMENT on the survivor whose sources
contain the merge id, carries lifetime earned over and recomputes the survivor's tier. The
merged participant's active and pending lots move to the survivor with their dates, and its
pending points and debt with them (the entries carry available + pending). The
unique sources make a redelivered ``ParticipantsMerged`` move nothing twice; tier changes go
to the outbox with the entries.
"""

from __future__ import annotations

import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform.db import Database, decimal_str, utcnow

from accrual_rules import ledger
from accrual_rules.store import RulesStore

log = structlog.get_logger("accrual.rules.merge")


def merge_ledgers(db: Database, msg: messages_pb2.ParticipantsMerged) -> int:
    """Move the balances; returns how many programs moved now (0 on a redelivery)."""
    tenant, merged, survivor = msg.tenant_id, msg.merged_participant_id, msg.survivor_participant_id
    if not merged or not survivor or merged == survivor:
        log.warning("merge_ignored", merge_id=msg.merge_id, reason="participants missing or equal")
        return 0
    store = RulesStore(db)
    moved = 0
    for program in store.programs_with_balance(tenant, merged):
        policy = program.policy()
        now = utcnow()
        with store.ledger_transaction() as tx:
            accounts = {pid: tx.lock_account(tenant, program.id, pid) for pid in sorted((merged, survivor))}
            source, target = accounts[merged], accounts[survivor]
            available, pending, debt = source.available, source.pending, source.debt
            amount, lifetime = available + pending, source.lifetime_earned
            if not amount and not lifetime and not debt:
                continue
            base = f"merge:{msg.merge_id}:{program.id}"
            out = tx.post(tenant_id=tenant, program_id=program.id, participant_id=merged, amount=-amount,
                          kind="REVERSAL", source=f"{base}:out", reason=f"merged into participant {survivor}",
                          occurred_at=now, now=now)
            if out is None:
                continue  # this merge already moved this program's balance
            tx.post(tenant_id=tenant, program_id=program.id, participant_id=survivor, amount=amount,
                    kind="ADJUSTMENT", source=f"{base}:in",
                    reason=f"merged from participant {merged} (lifetime {decimal_str(lifetime)})",
                    occurred_at=now, now=now)
            tx.move_lots(tenant, program.id, merged, survivor, now)
            source.pending = source.debt = ledger.ZERO
            target.pending += pending
            target.debt += debt
            tx.settle(tenant, policy, source, -available, -lifetime, now)
            old_tier, new_tier = tx.settle(tenant, policy, target, available, lifetime, now)
            if old_tier != new_tier:
                tx.announce(notifications=[ledger.tier_changed(
                    tenant, f"tier.changed:{base}", now, target, old_tier, new_tier, {"merge_id": msg.merge_id})])
            moved += 1
    log.info("ledgers_merged", merge_id=msg.merge_id, programs=moved)
    return moved
