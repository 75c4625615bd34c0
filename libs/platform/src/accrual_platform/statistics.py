"""Keep the planner's statistics of a schema's tables current where autovacuum does not.

PostgreSQL plans from statistics that ANALYZE gathers, normally autovacuum's job. With
autovacuum off (as on this project's machines), a table that grew from nothing keeps the
statistics of an empty table: the planner then believes ``tenant_id = $1`` selects one row
and reads every identity of a tenant for a 200-key lookup (60 ms instead of 2 ms), and
similar plans on balances and enrollments. Each service's server process runs one keeper for
its schema: it does nothing when autovacuum is on, and otherwise analyzes a table once its
changes since the last analysis pass the thresholds autovacuum would use.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
import structlog

from accrual_platform.db import Database

log = structlog.get_logger("accrual.statistics")


class StatisticsKeeper:
    def __init__(self, db: Database, *, interval: float = 10.0, threshold: int = 500,
                 scale: float = 0.1) -> None:
        self._db = db
        self._interval = interval
        self._threshold = threshold
        self._scale = scale
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def needed(self) -> bool:
        """Whether this database needs the keeper: PostgreSQL with autovacuum off."""
        if self._db.dialect != "postgresql":
            return False
        with self._db.engine.connect() as conn:
            return str(conn.exec_driver_sql("SHOW autovacuum").scalar()) != "on"

    def analyze_once(self) -> list[str]:
        """Analyze the schema's tables that changed enough; their names."""
        with self._db.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = :schema "
                "AND n_mod_since_analyze >= :threshold + :scale * n_live_tup ORDER BY relname"),
                {"schema": self._db.schema, "threshold": self._threshold, "scale": self._scale}).scalars().all()
            for name in rows:
                conn.exec_driver_sql(f'ANALYZE "{self._db.schema}"."{name}"')
            conn.commit()
        return list(rows)

    def start(self) -> None:
        try:
            if not self.needed():
                return
        except Exception as exc:  # the database may be down at start; the keeper is an optimisation
            log.warning("statistics_keeper_not_started", error=str(exc).splitlines()[0])
            return
        self._thread = threading.Thread(target=self._run, name="statistics-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                analyzed = self.analyze_once()
                if analyzed:
                    log.info("tables_analyzed", schema=self._db.schema, tables=analyzed)
            except Exception as exc:
                log.warning("analyze_failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
