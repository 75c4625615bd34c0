"""The embedded suite (`accrual run`), started once for the contract tests."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

ROOT = pathlib.Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, admin API key) of an embedded suite on SQLite with the in-process broker."""
    home = tmp_path_factory.mktemp("suite")
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GRPC_PORT": str(free_port())}
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    with open(home / "suite.log", "wb") as log:
        proc = subprocess.Popen([str(pathlib.Path(sys.executable).parent / "accrual"), "run"],
                                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", [proc])
            yield f"http://127.0.0.1:{port}", (home / "var" / "admin_key").read_text().strip()
        finally:
            stop([proc])


@pytest.fixture(scope="module")
def document(suite: tuple[str, str]) -> dict[str, object]:
    """The served /openapi.json."""
    doc: dict[str, object] = httpx.get(f"{suite[0]}/openapi.json").raise_for_status().json()
    return doc
