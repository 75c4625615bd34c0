"""The console's component tests (Vitest: CSV mapping, upload progress accounting, the
error-to-field mapping) run with the Python suite, so `make test` and CI run them too."""

from __future__ import annotations

import pathlib
import subprocess

CONSOLE = pathlib.Path(__file__).parents[2] / "console"
VITEST = CONSOLE / "node_modules" / ".bin" / "vitest"


def test_console_component_tests_pass() -> None:
    assert VITEST.exists(), "console/node_modules is missing: run `make console`"
    run = subprocess.run([str(VITEST), "run", "--reporter=dot"], cwd=CONSOLE, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
