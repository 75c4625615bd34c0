from alembic import context

from accrual_notify.storage import metadata
from accrual_platform.migrations import run_env

run_env(context, metadata)
