"""Schemathesis against the served /openapi.json: every route, with generated valid and
invalid input; no 5xx and every response matching the documented schema.

Runs the schemathesis CLI (its pytest plugin does not support pytest 9.2 yet) against the
embedded suite. Bounded here (FUZZ_EXAMPLES, default 10 per operation) so it fits in
`make test`; `make fuzz` runs it with many more.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

BIN = pathlib.Path(sys.executable).parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_every_route_no_5xx_and_responses_match_the_schema(tmp_path: pathlib.Path) -> None:
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GRPC_PORT": str(grpc_port), "RATE_LIMIT_PER_SECOND": "0"}
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    proc = subprocess.Popen([str(BIN / "accrual"), "run"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", [proc])
        key = (tmp_path / "var" / "admin_key").read_text().strip()
        run = subprocess.run(
            [str(BIN / "schemathesis"), "run", f"{base}/openapi.json", "--checks",
             "not_a_server_error,response_schema_conformance", "-H", f"X-API-Key: {key}",
             "--max-examples", str(EXAMPLES), "--generation-deterministic", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=1700)
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
        print(run.stdout[-3000:])
        assert "No issues found" in run.stdout or " passed" in run.stdout, run.stdout[-5000:]
    finally:
        stop([proc])
