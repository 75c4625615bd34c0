"""The operator console (``console/``, built by ``make console``) served at ``/console``.

A single-page app: a path under ``/console/`` that is not a file of the build answers its
``index.html``, so every page's URL can be linked and reloaded. Every answer carries a strict
Content-Security-Policy (the build has no inline script or style), ``X-Frame-Options: DENY``
and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import pathlib

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
#: Vite names every asset by its content hash, so a browser may keep it for good.
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = ("The console is not built: run `make console` (or `make run`), or point CONSOLE_DIR "
             "at a build (console/dist).\n")


def default_dir() -> pathlib.Path:
    """``console/dist`` of the source checkout this package is installed from (editable)."""
    return pathlib.Path(__file__).resolve().parents[4] / "console" / "dist"


class Console:
    """Serves the files of one console build directory."""

    def __init__(self, directory: pathlib.Path | None) -> None:
        self.root = (directory or default_dir()).resolve()

    def _file(self, path: str) -> pathlib.Path | None:
        """The build's file at ``path``, never one outside the build directory."""
        candidate = (self.root / path).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    @staticmethod
    def _secured(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    async def page(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        found = self._file(path) if path else None
        if found is not None:
            response: Response = FileResponse(found)
            if path.startswith("assets/"):
                response.headers["Cache-Control"] = IMMUTABLE
            return self._secured(response)
        if path.startswith("assets/"):
            # A missing asset is a 404, not the page: a stale tab then fails loudly.
            return self._secured(Response("not found\n", 404, media_type="text/plain"))
        index = self._file("index.html")
        if index is None:
            return self._secured(Response(NOT_BUILT, 503, media_type="text/plain"))
        response = FileResponse(index, media_type="text/html")
        response.headers["Cache-Control"] = "no-cache"
        return self._secured(response)

    async def root_redirect(self, _: Request) -> Response:
        return self._secured(RedirectResponse("/console/", 308))


def console_routes(directory: pathlib.Path | None) -> list[BaseRoute]:
    """``/console`` and everything under it (GET and HEAD only)."""
    console = Console(directory)
    return [Route("/console", console.root_redirect),
            Route("/console/{path:path}", console.page)]
