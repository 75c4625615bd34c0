"""Spectral lints the served /openapi.json with the committed ruleset (.spectral.yaml).

Spectral is pinned by tools/openapi-lint/package-lock.json; ``make openapi-lint-tools``
(a prerequisite of ``make test``) installs it with ``npm ci``.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from tests.contract.conftest import ROOT

pytestmark = [pytest.mark.e2e]
SPECTRAL = ROOT / "tools" / "openapi-lint" / "node_modules" / ".bin" / "spectral"


def test_served_document_passes_the_ruleset(document: dict[str, object], tmp_path: pathlib.Path) -> None:
    assert SPECTRAL.exists(), "spectral is missing: run `make openapi-lint-tools`"
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    run = subprocess.run([str(SPECTRAL), "lint", "--ruleset", str(ROOT / ".spectral.yaml"),
                          "--fail-severity", "warn", str(path)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-10000:] + run.stderr[-3000:]
