"""Tables of the notify schema: endpoints, messages (one per fact) and deliveries."""

from __future__ import annotations

import sqlalchemy as sa

from accrual_platform.db import JsonType, UtcDateTime

SCHEMA = "notify"
metadata = sa.MetaData(schema=SCHEMA)

endpoints = sa.Table(
    "endpoints", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("enabled_events", JsonType, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("disabled_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("deleted_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("fact_id", sa.String(400), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant_id", "fact_id", name="uq_messages_fact"),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("endpoint_id", sa.String(36), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_latency_ms", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_response_excerpt", sa.Text, nullable=False, server_default=""),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("next_attempt_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("endpoint_id", "message_id", name="uq_delivery"),
    sa.Index("ix_deliveries_endpoint", "tenant_id", "endpoint_id", "created_at"),
)

attempts = sa.Table(
    "attempts", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("delivery_id", sa.String(36), nullable=False, index=True),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("response_excerpt", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)
