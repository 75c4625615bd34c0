"""``python -m accrual_gateway.spec OUT [SCOPES]``: write the gateway's /openapi.json to OUT
without starting anything, so the console's API types can be generated from it (``make
console-types``); and to SCOPES the scope each route needs ({"POST /v1/programs":
"programs:write", ...}, from the operations' ``x-required-scope``), so the console shows what a
key cannot do as unavailable without a copy of the rules of its own."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

from accrual_gateway import codec, routing
from accrual_gateway.app import DEFAULT_FILES
from accrual_gateway.openapi import build_openapi


def document() -> bytes:
    """The document the gateway serves at /openapi.json."""
    return codec.dumps(build_openapi(routing.build_routes(DEFAULT_FILES)))


def route_scopes(spec: dict[str, Any]) -> dict[str, str]:
    """{"METHOD /path": required scope} of every operation."""
    return {f"{method.upper()} {path}": op["x-required-scope"]
            for path, item in sorted(spec["paths"].items()) for method, op in sorted(item.items())}


def scopes_json() -> str:
    return json.dumps(route_scopes(json.loads(document())), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    out = pathlib.Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(document())
    if len(argv) > 1:
        pathlib.Path(argv[1]).write_text(scopes_json())


if __name__ == "__main__":
    main(sys.argv[1:])
