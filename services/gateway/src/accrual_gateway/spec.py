"""``python -m accrual_gateway.spec OUT``: write the gateway's /openapi.json to OUT without
starting anything, so the console's API types can be generated from it (``make console-types``)."""

from __future__ import annotations

import pathlib
import sys

from accrual_gateway import codec, routing
from accrual_gateway.app import DEFAULT_FILES
from accrual_gateway.openapi import build_openapi


def document() -> bytes:
    """The document the gateway serves at /openapi.json."""
    return codec.dumps(build_openapi(routing.build_routes(DEFAULT_FILES)))


def main(argv: list[str]) -> None:
    out = pathlib.Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(document())


if __name__ == "__main__":
    main(sys.argv[1:])
