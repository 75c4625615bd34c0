from accrual_ingest.storage import metadata
from accrual_platform.migrations import run_env
from alembic import context

run_env(context, metadata)
