"""The `accrual` command's own behaviour: a port in use, `keys` on the embedded files and on
DATABASE_URL, and where `demo` looks for the suite. Each runs the installed command."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from accrual_platform.testing import PG_URL, free_port
from accrual_suite import demo
from sqlalchemy.engine import make_url

BIN = pathlib.Path(sys.executable).parent / "accrual"
PER_SERVICE = {"DATABASE_URL": "sqlite:///var/{schema}.db", "BROKER_URL": "stub://", "INTERNAL_TOKEN": "t",
               **{f"{s}_ADDR": "127.0.0.1:1" for s in ("IDENTITY", "INGEST", "RULES", "NOTIFY")}}


def accrual(args: list[str], cwd: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "BROKER_URL", "ACCRUAL_VAR_DIR", "ACCRUAL_API_KEY")}
    return subprocess.run([str(BIN), *args], cwd=cwd, env={**full, **env}, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(w in done.stderr for w in words), done.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("setting", ["GATEWAY_PORT", "GRPC_PORT"])
def test_run_on_a_port_in_use_says_which_setting(tmp_path: pathlib.Path, taken_port: int, setting: str) -> None:
    other = "GRPC_PORT" if setting == "GATEWAY_PORT" else "GATEWAY_PORT"
    done = accrual(["run"], tmp_path, **{setting: str(taken_port), other: str(free_port())})
    assert_one_line(done, f"port {taken_port}", "already in use", f"set {setting}")


@pytest.mark.e2e
def test_run_with_one_port_for_both(tmp_path: pathlib.Path) -> None:
    port = str(free_port())
    assert_one_line(accrual(["run"], tmp_path, GATEWAY_PORT=port, GRPC_PORT=port),
                    "GRPC_PORT and GATEWAY_PORT are both")


@pytest.mark.e2e
@pytest.mark.parametrize(("command", "setting"), [(["serve", "identity"], "GRPC_PORT"),
                                                  (["gateway"], "GATEWAY_PORT")])
def test_per_service_process_on_a_port_in_use(tmp_path: pathlib.Path, taken_port: int,
                                              command: list[str], setting: str) -> None:
    done = accrual(command, tmp_path, **PER_SERVICE, **{setting: str(taken_port)})
    assert_one_line(done, f"set {setting}")


@pytest.mark.e2e
def test_keys_on_the_embedded_files_before_the_first_run(tmp_path: pathlib.Path) -> None:
    """keys work in a fresh clone before `make run`: they migrate identity's file first."""
    made = accrual(["keys", "create", "--tenant", "acme", "--scopes", "events:write"], tmp_path)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk_") and "key id" in made.stderr and (tmp_path / "var" / "identity.db").exists()
    listed = accrual(["keys", "list", "--tenant", "acme"], tmp_path).stdout
    key_id = listed.splitlines()[1].split()[0]
    assert key not in listed and key[:10] in listed
    assert "revoked at" in accrual(["keys", "revoke", key_id], tmp_path).stdout
    assert "already revoked" in accrual(["keys", "revoke", key_id], tmp_path).stdout
    assert_one_line(accrual(["keys", "list", "--tenant", "nobody"], tmp_path), "no tenant named 'nobody'")
    assert_one_line(accrual(["keys", "revoke", str(uuid.uuid4())], tmp_path), "no API key")


@pytest.mark.integration
def test_keys_on_database_url(tmp_path: pathlib.Path) -> None:
    assert accrual(["migrate"], tmp_path, DATABASE_URL=PG_URL).returncode == 0
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    made = accrual(["keys", "create", "--tenant", tenant, "--scopes", "admin"], tmp_path, DATABASE_URL=PG_URL)
    assert made.returncode == 0, made.stderr
    listed = accrual(["keys", "list", "--tenant", tenant], tmp_path, DATABASE_URL=PG_URL).stdout
    assert made.stdout.strip()[:10] in listed and len(listed.splitlines()) == 2
    key_id = listed.splitlines()[1].split()[0]
    assert "revoked at" in accrual(["keys", "revoke", key_id], tmp_path, DATABASE_URL=PG_URL).stdout
    assert not (tmp_path / "var").exists()  # nothing embedded was touched
    unreachable = make_url(PG_URL).set(port=free_port()).render_as_string(hide_password=False)
    assert_one_line(accrual(["keys", "list", "--tenant", tenant], tmp_path, DATABASE_URL=unreachable),
                    "cannot reach identity's database on DATABASE_URL")


@pytest.mark.e2e
def test_demo_looks_where_run_listens(tmp_path: pathlib.Path) -> None:
    """GATEWAY_HOST and GATEWAY_PORT mean to `accrual demo` what they mean to `accrual run`."""
    (tmp_path / "var").mkdir(mode=0o700)
    (tmp_path / "var" / "admin_key").write_text("sk_x")
    port = free_port()
    done = accrual(["demo"], tmp_path, GATEWAY_HOST="0.0.0.0", GATEWAY_PORT=str(port))
    assert_one_line(done, f"cannot reach http://127.0.0.1:{port}")


def test_local_url() -> None:
    assert demo.local_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert demo.local_url("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert demo.local_url("::", 9000) == "http://[::1]:9000"
    assert demo.local_url("example.org", 80) == "http://example.org:80"
