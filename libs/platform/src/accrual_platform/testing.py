"""Where the test suites find the real servers, and a fresh migrated schema.

Defaults are the servers every machine of this project runs (README). Each can be moved
with an environment variable so that several suites can run side by side on one machine
(for instance one database and one RabbitMQ vhost per git worktree):

- ``ACCRUAL_TEST_DATABASE_URL`` (PostgreSQL, SQLAlchemy URL)
- ``ACCRUAL_TEST_BROKER_URL`` (RabbitMQ, amqp URL)
- ``ACCRUAL_TEST_REDIS_URL`` (Redis)

Tests that need one of them fail, never skip, when it is missing.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from accrual_platform import errors, migrations

PG_URL = os.environ.get("ACCRUAL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: Fernet key of webhook secrets in tests: fixed, because test databases outlive a run and
#: notify refuses to start with a key that cannot open the secrets stored before
SECRETS_KEY = "d7IHjvS-nmQb_exV3yrM3d07c7Qr-1QtKkOrgE7ger4="
AMQP_URL = os.environ.get("ACCRUAL_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("ACCRUAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def fresh_schema(schema: str, migration_dir: pathlib.Path, url: str = PG_URL) -> str:
    """Drop ``schema`` and migrate it again from nothing; returns the database URL."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.dispose()
    migrations.upgrade(url, schema, migration_dir)
    return url


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, taken below the kernel's
    ephemeral range: a process restarted on its port (the reliability tests restart every
    service) must find it free, and a port from the ephemeral range can meanwhile have become
    the local end of some outgoing connection."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(15000, max(15001, low - 1))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, procs: Sequence[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Wait until ``url`` answers 200; fail early when one of ``procs`` has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"process exited early: {p.args!r}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready")


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """SIGTERM every process, then wait; kill what is still running after ``grace`` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def assert_no_secrets(logs: Sequence[pathlib.Path], secrets: Sequence[str]) -> None:
    """Fail when any of ``secrets`` (API keys, tokens) appears in the spawned processes' logs.

    SPEC 8: keys, tokens and secrets never appear in a log line or a traceback.
    """
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:3]}…) was logged in {path.name}"


class FakePrograms:
    """A stand-in for the rules service's program lookup (clients.ProgramDirectory): the
    programs each tenant made. ``down`` makes it fail as an unreachable rules service does."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self.down = False

    def __call__(self, tenant_id: str, program_id: str) -> bool:
        if self.down:
            raise errors.Unavailable("programs cannot be checked right now, retry",
                                     reason="programs_unavailable")
        return self._owners.get(program_id) == tenant_id

    def create(self, tenant_id: str) -> str:
        program_id = str(uuid.uuid4())
        self._owners[program_id] = tenant_id
        return program_id
