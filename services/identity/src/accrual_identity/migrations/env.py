"""Alembic environment of the identity schema (see accrual_platform.migrations)."""

from accrual_identity.storage import metadata
from accrual_platform.migrations import run_env
from alembic import context

run_env(context, metadata)
