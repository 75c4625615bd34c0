"""Tables of the rules schema: programs, rules and their versions, the ledger."""

from __future__ import annotations

import sqlalchemy as sa
from accrual_platform.db import ExactDecimal, JsonType, UtcDateTime
from accrual_platform.outbox import outbox_table

SCHEMA = "rules"
metadata = sa.MetaData(schema=SCHEMA)

programs = sa.Table(
    "programs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("on_unknown_participant", sa.String(16), nullable=False),
    sa.Column("tiers", JsonType, nullable=False),
    sa.Column("rounding_mode", sa.String(16), nullable=False),
    sa.Column("rounding_precision", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("event_type_policy", sa.String(16), nullable=False, server_default="OPEN"),
    sa.Column("scheduled_triggers", JsonType, nullable=True),
    # The points bank's policies (expiry, timezone, negative balance, expiring lead times);
    # None: the defaults (no expiry, FORBID).
    sa.Column("bank_policy", JsonType, nullable=True),
    # When earned points become spendable (domain.pending.PendingPolicy); None: IMMEDIATE.
    sa.Column("pending_policy", JsonType, nullable=True),
    # The event_data field of an event's money amount, of which a reversal's amount is a share.
    sa.Column("monetary_field", sa.String(255), nullable=True),
)

#: The scheduler's progress: the last day each trigger of each program was fully fired for.
scheduler_watermarks = sa.Table(
    "scheduler_watermarks", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("trigger", sa.String(32), primary_key=True),
    sa.Column("last_date", sa.Date, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

program_event_types = sa.Table(
    "program_event_types", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("properties", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

RULE_FIELDS = ("name", "event_type", "condition", "formula", "apply_tier_multiplier", "order",
               "stop_after_match", "active_from", "active_to", "status", "caps", "expiry")

rules = sa.Table(
    "rules", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("event_type", sa.String(255), nullable=False),
    sa.Column("condition", sa.Text, nullable=False),
    sa.Column("formula", sa.Text, nullable=False),
    sa.Column("apply_tier_multiplier", sa.Boolean, nullable=False),
    sa.Column("order", sa.Integer, nullable=False),
    sa.Column("stop_after_match", sa.Boolean, nullable=False),
    sa.Column("active_from", UtcDateTime()),
    sa.Column("active_to", UtcDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("caps", JsonType),
    # times the rule went over the expression sandbox's budget since it was last saved
    sa.Column("budget_breaches", sa.Integer, nullable=False, server_default="0"),
    # The rule's own expiry policy for the lots it awards (None: the program's).
    sa.Column("expiry", JsonType, nullable=True),
    sa.Index("ix_rules_program", "tenant_id", "program_id"),
)

rule_versions = sa.Table(
    "rule_versions", metadata,
    sa.Column("rule_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("snapshot", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

ledger = sa.Table(
    "ledger_entries", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("participant_id", sa.String(36), nullable=False),
    sa.Column("amount", ExactDecimal(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(400), nullable=False),
    sa.Column("event_id", sa.String(36)),
    sa.Column("rule_id", sa.String(36)),
    sa.Column("rule_version", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # When the fact behind the entry happened (the event timestamp): cap windows count by it.
    sa.Column("occurred_at", UtcDateTime()),
    # Canonical hash of an adjustment request, to tell a retry from a conflicting reuse.
    sa.Column("payload_hash", sa.String(64)),
    # A debit under the CLAMP policy: the points the lots could not cover (not taken).
    sa.Column("unrecovered", ExactDecimal()),
    sa.UniqueConstraint("tenant_id", "source", name="uq_ledger_source"),
    sa.Index("ix_ledger_account", "tenant_id", "program_id", "participant_id", "created_at"),
    sa.Index("ix_ledger_rule_usage", "tenant_id", "rule_id", "participant_id", "occurred_at"),
)

balances = sa.Table(
    "balances", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", sa.String(36), primary_key=True),
    sa.Column("available", ExactDecimal(), nullable=False),
    sa.Column("lifetime_earned", ExactDecimal(), nullable=False),
    sa.Column("tier", sa.String(200)),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # Points owed (ALLOW policy): available = active lots' remaining - debt; credits pay it first.
    sa.Column("debt", ExactDecimal(), nullable=False, server_default="0"),
    # The remaining points of PENDING lots (not spendable).
    sa.Column("pending", ExactDecimal(), nullable=False, server_default="0"),
    # Every award updates the row without touching its key: room on the page for HOT updates.
    postgresql_with={"fillfactor": 70},
)

LOT_STATUSES = ("PENDING", "ACTIVE", "EXHAUSTED", "EXPIRED", "CANCELLED")

# Every credit's points (issue 22): debits consume them, expiry takes what remains. Written in
# the transaction of the credit's ledger entry; changed only under the balance row's lock.
lots = sa.Table(
    "lots", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("participant_id", sa.String(36), nullable=False),
    # the credit's ledger entry
    sa.Column("entry_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.String(36)),
    sa.Column("original", ExactDecimal(), nullable=False),
    sa.Column("remaining", ExactDecimal(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("earned_at", UtcDateTime(), nullable=False),
    sa.Column("activates_at", UtcDateTime()),
    sa.Column("expires_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("entry_id", name="uq_lots_entry"),
    sa.Index("ix_lots_account", "tenant_id", "program_id", "participant_id", "status"),
    sa.Index("ix_lots_event", "tenant_id", "event_id"),
    # the expiry run's and the activation's scans touch only lots that can still change
    sa.Index("ix_lots_expiry", "expires_at", postgresql_where=sa.text("status = 'ACTIVE'"),
             sqlite_where=sa.text("status = 'ACTIVE'")),
    sa.Index("ix_lots_activation", "activates_at", postgresql_where=sa.text("status = 'PENDING'"),
             sqlite_where=sa.text("status = 'PENDING'")),
    postgresql_with={"fillfactor": 80},
)

# What each debit took from each lot (negative: points restored into the lot). For every lot,
# original - remaining = the sum of its allocations.
lot_allocations = sa.Table(
    "lot_allocations", metadata,
    sa.Column("entry_id", sa.String(36), primary_key=True),
    sa.Column("lot_id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("amount", ExactDecimal(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_lot_allocations_lot", "lot_id"),
)

# A program's rewards catalogue (issue 23). ``stock`` is the units left (None: unlimited),
# taken by a hold and given back by a cancel, an expiry or a full refund.
rewards = sa.Table(
    "rewards", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("cost_points", ExactDecimal(), nullable=False),
    sa.Column("stock", sa.BigInteger),
    sa.Column("limit_count", sa.Integer),
    sa.Column("limit_period", sa.String(32)),
    sa.Column("eligible_tiers", JsonType, nullable=False),
    sa.Column("active_from", UtcDateTime()),
    sa.Column("active_to", UtcDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_rewards_program", "tenant_id", "program_id", "created_at"),
)

# Redemptions: a hold is a REDEEM ledger entry (``hold_entry_id``) whose allocations took the
# points from lots; releases and refunds are credit entries that restore them. Changed only
# under the participant's balance row lock.
redemptions = sa.Table(
    "redemptions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("participant_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("payload_hash", sa.String(64), nullable=False),
    sa.Column("reward_id", sa.String(36)),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("points", ExactDecimal(), nullable=False),
    sa.Column("captured_points", ExactDecimal(), nullable=False),
    sa.Column("refunded_points", ExactDecimal(), nullable=False),
    sa.Column("released_points", ExactDecimal(), nullable=False),
    sa.Column("external_ref", sa.String(255), nullable=False),
    sa.Column("hold_entry_id", sa.String(36), nullable=False),
    sa.Column("hold_expires_at", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant_id", "program_id", "idempotency_key", name="uq_redemptions_key"),
    sa.Index("ix_redemptions_participant", "tenant_id", "program_id", "participant_id", "created_at"),
    sa.Index("ix_redemptions_reward", "reward_id", "participant_id", "created_at"),
    # the scheduler's scan touches only holds
    sa.Index("ix_redemptions_hold_expiry", "hold_expires_at", postgresql_where=sa.text("state = 'HELD'"),
             sqlite_where=sa.text("state = 'HELD'")),
)

# The evaluation an event got, written in the same transaction as its ledger entries: a
# redelivered message finds it and re-announces the same outcome instead of re-evaluating.
event_evaluations = sa.Table(
    "event_evaluations", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("outcome", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# Reversals and cancellations of an event's points (issue 22). ``shares``: by program id, the
# exact share of the event ("n/d") each took; an event's shares add up to at most 1, under the
# lock of the balances its points went to. The key makes a retried request answer the original.
reversals = sa.Table(
    "reversals", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    # REVERSAL, or CANCEL (CancelPoints)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("shares", JsonType, nullable=False),
    sa.Column("points", ExactDecimal(), nullable=False),
    sa.Column("unrecovered", ExactDecimal(), nullable=False),
    sa.Column("debt", ExactDecimal(), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant_id", "event_id", "idempotency_key", name="uq_reversals_key"),
)

# The idempotency keys of events whose points wait for an activating event (ON_EVENT), which
# may name the earning event by its key.
pending_event_keys = sa.Table(
    "pending_event_keys", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
)

# Activating events processed before the event they name (``event_id:<id>`` or
# ``idempotency_key:<key>``): that event's points are active as soon as they are earned.
early_activations = sa.Table(
    "early_activations", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("reference", sa.String(300), primary_key=True),
    sa.Column("activating_event_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# Notifications of synchronous changes (adjustments), committed with the ledger entry.
outbox = outbox_table(metadata)
