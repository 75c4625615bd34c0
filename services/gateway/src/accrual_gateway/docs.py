"""The /docs page: Swagger UI 5 (OpenAPI 3.1) served from the swagger-ui-py wheel, offline.

The page carries no inline script: the UI is started by ``/docs/init.js`` so that a strict
Content-Security-Policy (``script-src 'self'``) can apply to it.
"""

from __future__ import annotations

import importlib.util
import pathlib

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

_HERE = pathlib.Path(__file__).parent / "docs_assets"

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Accrual API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""


def swagger_ui_dir() -> pathlib.Path:
    """The static folder of the installed swagger-ui-py wheel (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "static"


async def _page(_: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


async def _init_js(_: Request) -> Response:
    return FileResponse(_HERE / "init.js", media_type="text/javascript")


def docs_routes() -> list[BaseRoute]:
    """``/docs``, its start script and the vendored Swagger UI assets."""
    return [Route("/docs", _page), Route("/docs/init.js", _init_js),
            Mount("/docs/assets", StaticFiles(directory=swagger_ui_dir()))]
