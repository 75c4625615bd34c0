"""Owner-only files: var/ and what is in it, SQLite databases with their -wal and -shm."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest
import sqlalchemy as sa
from accrual_platform import files, settings
from accrual_platform.db import make_engine


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> object:
    # The usual umask (022) leaves new files world-readable, which is what must not happen.
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_creates_and_tightens_what_exists(tmp_path: pathlib.Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    (var / "internal_token").write_text("old")
    (var / "ingest.db").write_text("")
    (var / "nested").mkdir()
    (var / "nested" / "key").write_text("k")
    os.chmod(var, 0o755)
    for p in (var / "internal_token", var / "ingest.db", var / "nested" / "key"):
        os.chmod(p, 0o644)
    files.private_dir(var)
    assert mode(var) == 0o700
    assert mode(var / "nested") == 0o700
    for p in (var / "internal_token", var / "ingest.db", var / "nested" / "key"):
        assert mode(p) == 0o600, p
    fresh = files.private_dir(tmp_path / "fresh" / "var")
    assert mode(fresh) == 0o700


def test_write_private_creates_and_rewrites_owner_only(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "admin_key"
    files.write_private(path, "sk_one")
    assert mode(path) == 0o600 and path.read_text() == "sk_one"
    os.chmod(path, 0o644)
    files.write_private(path, "sk_two")
    assert mode(path) == 0o600 and path.read_text() == "sk_two"


def test_embedded_settings_make_var_and_the_token_owner_only(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    var = tmp_path / "var"
    monkeypatch.setenv("ACCRUAL_VAR_DIR", str(var))
    for name in ("INTERNAL_TOKEN", "DATABASE_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    first = settings.Settings.from_env(embedded=True)
    assert mode(var) == 0o700 and mode(var / "internal_token") == 0o600
    os.chmod(var / "internal_token", 0o644)
    os.chmod(var, 0o755)
    again = settings.Settings.from_env(embedded=True)
    assert again.internal_token == first.internal_token
    assert mode(var) == 0o700 and mode(var / "internal_token") == 0o600


def test_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/{{schema}}.db"
    engine = make_engine(url, "ingest")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE ingest.t (x INTEGER)")
            conn.execute(sa.text("INSERT INTO ingest.t VALUES (1)"))
            db = tmp_path / "ingest.db"
            for p in (db, tmp_path / "ingest.db-wal", tmp_path / "ingest.db-shm"):
                assert p.exists(), p
                assert mode(p) == 0o600, p
    finally:
        engine.dispose()
    # a database an older version left readable is tightened when it is opened again
    os.chmod(tmp_path / "ingest.db", 0o644)
    make_engine(url, "ingest").dispose()
    assert mode(tmp_path / "ingest.db") == 0o600
