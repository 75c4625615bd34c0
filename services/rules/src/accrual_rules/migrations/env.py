from accrual_platform.migrations import run_env
from accrual_rules.storage import metadata
from alembic import context

run_env(context, metadata)
