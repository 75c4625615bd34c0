"""The repository README's commands, run as printed (with bash, from the repository's root)
against the embedded suite (`accrual run`, as `make run` starts it).

The suite runs on free ports with its var/ in a temporary folder, so the commands get the
environment `make run` would have had with those settings (GATEWAY_PORT, GRPC_PORT,
ACCRUAL_VAR_DIR); the only edits to the printed text are that folder in place of `var/` and
those ports in place of the default 8080 and 50051.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = pathlib.Path(sys.executable).parent / "accrual"


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)


def block(starting: str) -> str:
    """The README's one sh block whose first line starts with ``starting``."""
    found = [b for b in sh_blocks() if b.startswith(starting)]
    assert len(found) == 1, f"README has {len(found)} sh blocks starting with {starting!r}"
    return found[0]


def inline_command(starting: str) -> str:
    found: list[str] = [c for c in re.findall(r"`([^`\n]+)`", README.read_text()) if c.startswith(starting)]
    assert len(found) == 1, f"README has {len(found)} inline commands starting with {starting!r}"
    return found[0]


@dataclasses.dataclass
class Suite:
    var: pathlib.Path
    http_port: int
    grpc_port: int
    env: dict[str, str]

    @property
    def key(self) -> str:
        return (self.var / "admin_key").read_text().strip()

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        """``script`` run as a user would paste it into bash at the repository's root."""
        script = (script.replace("var/admin_key", f"{self.var}/admin_key")
                  .replace("127.0.0.1:8080", f"127.0.0.1:{self.http_port}")
                  .replace("127.0.0.1:50051", f"127.0.0.1:{self.grpc_port}"))
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        return done


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("readme")
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(http_port), "GRPC_PORT": str(grpc_port),
           "ACCRUAL_VAR_DIR": str(tmp / "var")}
    for name in ("DATABASE_URL", "BROKER_URL", "ACCRUAL_API_KEY"):
        env.pop(name, None)
    # a user's shell, not a make recipe's: a nested make would print "Entering directory" lines
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    log = open(tmp / "suite.log", "wb")
    proc = subprocess.Popen([str(BIN), "run"], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz", [proc])
        yield Suite(tmp / "var", http_port, grpc_port, env)
    finally:
        stop([proc])
        log.close()


@pytest.mark.e2e
def test_curl_walkthrough(suite: Suite) -> None:
    out = suite.run(block("KEY=$(cat var/admin_key)")).stdout
    assert '"status": "COMPLETED"' in out
    assert '"available": 125' in out  # only the balance has this field


@pytest.mark.e2e
def test_make_demo_prints_a_script_that_works(suite: Suite) -> None:
    """`make demo` finds the suite at its GATEWAY_PORT (not the default) and the key in var/;
    the script it prints runs as pasted, and its purchases earn what its comments say."""
    script = suite.run(block("make demo")).stdout
    assert f"B=http://127.0.0.1:{suite.http_port}" in script
    out = suite.run(script).stdout
    assert '"points_awarded": 650' in out and '"available": 825' in out and '"tier": "silver"' in out
    assert '"points": 325' in out and '"available": 500' in out  # the refund
    assert '"status": "EXPIRED"' in out  # the old purchase's points
    again = suite.run(f"KEY=$(cat var/admin_key); B=http://127.0.0.1:8080\n{inline_command('make demo ARGS=')}")
    assert "Demo program" in again.stdout


@pytest.mark.e2e
def test_grpc_walkthrough_example(suite: Suite) -> None:
    out = suite.run(block("make grpc-walkthrough")).stdout
    assert "EVENT_STATUS_COMPLETED" in out and out.splitlines()[-1] == "balance: 125 points available"
    other = suite.run("KEY=$(cat var/admin_key); B=http://127.0.0.1:8080\n"
                      + inline_command("make grpc-walkthrough ARGS="))
    assert other.stdout.splitlines()[-1] == "balance: 125 points available"


@pytest.mark.e2e
def test_keys_commands(suite: Suite) -> None:
    """create prints the key alone on stdout; list shows it by id and prefix; revoke refuses it."""
    commands = block('make keys ARGS="create').splitlines()
    key = suite.run(commands[0]).stdout.strip()
    assert re.fullmatch(r"sk_\S+", key)
    url = f"http://127.0.0.1:{suite.http_port}/v1/events?program_id=x"
    assert httpx.get(url, headers={"X-API-Key": key}).status_code != 401
    listed = suite.run(commands[1]).stdout
    assert key not in listed and key[:10] in listed
    # the rest of the block revokes the tenant's first key, the one made above
    key_id = next(line.split()[0] for line in listed.splitlines() if key[:10] in line)
    done = suite.run("\n".join(commands[2:])).stdout
    assert f"key {key_id}" in done and "revoked" in done
    assert suite.run(commands[1]).stdout.splitlines()[1].split()[3] != "-"  # its REVOKED column
    # the running suite cached the key above; it refuses it once that entry expires
    deadline = time.monotonic() + 5 + 3  # API_KEY_CACHE_SECONDS, and a margin
    while httpx.get(url, headers={"X-API-Key": key}).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key is still accepted"
        time.sleep(0.2)
