"""Webhook signing secrets are stored encrypted (SECRETS_KEY, Fernet), on PostgreSQL and
SQLite: the columns never hold a secret, signatures still verify with the secret the partner
was shown, a missing or wrong key stops notify at start, and rows from before encryption
(plain text, as migration 0005 leaves them) keep working and are encrypted at start."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import stat
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from accrual_notify import bootstrap, storage
from accrual_notify.bootstrap import NotifyRuntime
from accrual_notify.domain import signing
from accrual_notify.secretbox import SecretBox, WrongSecretsKey
from accrual_platform import migrations, queue
from accrual_platform.db import Database, make_engine
from accrual_platform.settings import ConfigError, Settings
from accrual_platform.testing import PG_URL, SECRETS_KEY
from cryptography.fernet import Fernet
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SCHEMA = bootstrap.SCHEMA
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/{{schema}}.db"
        return
    # A schema of its own, so other tests' endpoints (and this test's keys) never meet.
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    engine.dispose()
    yield PG_URL
    # leave it migrated, as the other notify tests expect of a schema they did not drop
    migrations.upgrade(PG_URL, SCHEMA, bootstrap.MIGRATIONS)


def settings(url: str, *keys: str) -> Settings:
    return Settings(database_url=url, broker_url="stub://", redis_url=None, internal_token="t",
                    webhook_allow_private=True, secrets_keys=keys or (SECRETS_KEY,))


def runtime(url: str, *keys: str) -> NotifyRuntime:
    return bootstrap.build(settings(url, *keys), queue.make_broker("stub://"))


def stored(rt: NotifyRuntime, endpoint_id: str) -> sa.Row:  # type: ignore[type-arg]
    e = storage.endpoints
    with rt.db.transaction() as session:
        return session.execute(sa.select(e.c.secret, e.c.previous_secret).where(
            e.c.id == endpoint_id)).one()


def create(rt: NotifyRuntime) -> tuple[str, str]:
    endpoint, secret = rt.endpoints.create("t1", "https://example.com/hook", ["*"], "")
    return endpoint.id, secret


def job_secrets(rt: NotifyRuntime | storage.NotifyStore,
                endpoint_id: str) -> tuple[str, str | None]:
    """The secrets an attempt to deliver to the endpoint signs with (read as a worker does)."""
    store = rt if isinstance(rt, storage.NotifyStore) else rt.store
    now = dt.datetime.now(dt.UTC)
    delivery_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    with store.db.transaction() as session:
        session.execute(storage.messages.insert().values(
            id=message_id, tenant_id="t1", fact_id=f"f-{delivery_id}",
            type="event.completed", payload='{"a":1}', created_at=now))
        session.execute(storage.deliveries.insert().values(
            id=delivery_id, tenant_id="t1", endpoint_id=endpoint_id,
            message_id=message_id, status=storage.PENDING, attempts=0,
            next_attempt_at=now, created_at=now))
    claim = store.claim("t1", delivery_id, now=now, lease_until=now + dt.timedelta(seconds=30),
                           due_by=now + dt.timedelta(seconds=1))
    assert claim.job is not None, claim.skipped
    return claim.job.secret, claim.job.previous_secret


def verifies(secret: str, signed_with: list[str]) -> bool:
    """Whether a partner holding ``secret`` accepts a message signed with ``signed_with``."""
    headers = signing.headers(signed_with, "msg_1", int(time.time()), '{"a":1}')
    try:
        Webhook(secret).verify('{"a":1}', headers)
    except WebhookVerificationError:
        return False
    return True


def test_the_columns_hold_tokens_and_deliveries_sign_with_the_secret(url: str) -> None:
    migrations.upgrade(url, SCHEMA, bootstrap.MIGRATIONS)
    rt = runtime(url)
    try:
        endpoint_id, secret = create(rt)
        row = stored(rt, endpoint_id)
        assert signing.SECRET_PREFIX not in row.secret
        assert secret.removeprefix(signing.SECRET_PREFIX) not in row.secret
        assert row.secret.startswith("gAAAAA")  # a Fernet token
        _, rotated = rt.endpoints.rotate_secret("t1", endpoint_id)
        row = stored(rt, endpoint_id)
        for plain in (secret, rotated):
            for column in (row.secret, row.previous_secret):
                assert plain.removeprefix(signing.SECRET_PREFIX) not in column

        current, previous = job_secrets(rt, endpoint_id)

        assert (current, previous) == (rotated, secret)
        assert verifies(rotated, [current]) and verifies(secret, [current, previous])
        assert not verifies(secret, [current])
    finally:
        rt.stop()


def test_a_missing_malformed_or_wrong_key_stops_notify_at_start(url: str) -> None:
    migrations.upgrade(url, SCHEMA, bootstrap.MIGRATIONS)
    rt = runtime(url)
    create(rt)
    rt.stop()

    with pytest.raises(ConfigError, match="SECRETS_KEY is not set"):
        bootstrap.build(dataclasses.replace(settings(url), secrets_keys=()),
                        queue.make_broker("stub://"))
    with pytest.raises(ConfigError, match="SECRETS_KEY must be 32 url-safe base64"):
        runtime(url, "not-a-key")
    with pytest.raises(WrongSecretsKey, match="SECRETS_KEY does not decrypt the stored webhook"):
        runtime(url, Fernet.generate_key().decode())


def test_a_new_key_listed_first_reencrypts_every_secret_at_start(url: str) -> None:
    migrations.upgrade(url, SCHEMA, bootstrap.MIGRATIONS)
    rt = runtime(url)
    endpoint_id, secret = create(rt)
    rt.stop()
    new = Fernet.generate_key().decode()

    rotated = runtime(url, new, SECRETS_KEY)
    rotated.stop()
    only_new = runtime(url, new)  # opens every row: they were re-encrypted with the new key
    try:
        assert job_secrets(only_new, endpoint_id)[0] == secret
    finally:
        only_new.stop()


def test_plain_text_secrets_from_before_0005_work_and_are_encrypted_at_start(url: str) -> None:
    migrations.upgrade(url, SCHEMA, bootstrap.MIGRATIONS, "0004")
    current, previous = signing.new_secret(), signing.new_secret()
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(url, SCHEMA, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(storage.endpoints.insert().values(
                id="ep-old", tenant_id="t1", url="https://example.com/h", secret=current,
                previous_secret=previous, previous_secret_expires_at=now + dt.timedelta(hours=1),
                status=storage.ENABLED, disabled_reason="", enabled_events=["*"],
                description="", created_at=now, updated_at=now))
    finally:
        engine.dispose()
    migrations.upgrade(url, SCHEMA, bootstrap.MIGRATIONS)
    box = SecretBox([SECRETS_KEY])
    plain = storage.NotifyStore(Database(url, SCHEMA, pool_size=1), box)
    try:
        # before notify starts (which encrypts them), the plain secrets sign as they did
        assert job_secrets(plain, "ep-old") == (current, previous)
    finally:
        plain.db.dispose()

    rt = runtime(url)
    try:
        row = stored(rt, "ep-old")
        assert current not in row.secret and previous not in row.previous_secret
        assert (box.open(row.secret), box.open(row.previous_secret)) == (current, previous)
        assert job_secrets(rt, "ep-old") == (current, previous)
        assert rt.store.prepare_secrets() == 0  # nothing left in plain text
    finally:
        rt.stop()


def test_plain_text_secrets_are_read_as_they_are() -> None:
    box = SecretBox([SECRETS_KEY])
    secret = signing.new_secret()
    assert box.open(secret) == secret and box.needs_reseal(secret)
    sealed = box.seal(secret)
    assert sealed != box.seal(secret)  # a fresh IV each time: equal secrets do not show
    assert box.open(sealed) == secret and not box.needs_reseal(sealed)


def test_the_embedded_suite_makes_its_key_once_readable_by_its_owner_only(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCRUAL_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("SECRETS_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)

    first = Settings.from_env(embedded=True).secrets_keys
    again = Settings.from_env(embedded=True).secrets_keys

    path = tmp_path / "var" / "secrets_key"
    assert first == again == (path.read_text(),)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    SecretBox(first)  # a valid Fernet key
    monkeypatch.setenv("SECRETS_KEY", f"{SECRETS_KEY}, {first[0]}")
    assert Settings.from_env(embedded=True).secrets_keys == (SECRETS_KEY, first[0])
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://x/y")
    monkeypatch.setenv("BROKER_URL", "stub://")
    monkeypatch.setenv("INTERNAL_TOKEN", "t")
    monkeypatch.delenv("SECRETS_KEY")
    assert Settings.from_env().secrets_keys == ()  # a deployment must say its key
