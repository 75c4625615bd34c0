"""The console's API types (console/src/api/schema.d.ts) are what openapi-typescript makes of
the gateway's /openapi.json today, and its route scopes (scopes.json) are the document's:
`make console-types` regenerates both."""

from __future__ import annotations

import pathlib
import subprocess

from accrual_gateway.spec import document, scopes_json

ROOT = pathlib.Path(__file__).parents[2]
CONSOLE = ROOT / "console"
GENERATOR = CONSOLE / "node_modules" / ".bin" / "openapi-typescript"


def test_committed_api_types_match_the_served_openapi(tmp_path: pathlib.Path) -> None:
    assert GENERATOR.exists(), "console/node_modules is missing: run `make console`"
    spec = tmp_path / "openapi.json"
    spec.write_bytes(document())
    out = tmp_path / "schema.d.ts"
    subprocess.run([str(GENERATOR), str(spec), "-o", str(out)], cwd=CONSOLE, check=True,
                   capture_output=True, timeout=120)
    committed = (CONSOLE / "src" / "api" / "schema.d.ts").read_text()
    assert out.read_text() == committed, "console/src/api/schema.d.ts is stale: run `make console-types`"


def test_committed_route_scopes_match_the_served_openapi() -> None:
    committed = (CONSOLE / "src" / "api" / "scopes.json").read_text()
    assert committed == scopes_json(), "console/src/api/scopes.json is stale: run `make console-types`"
