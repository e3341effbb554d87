"""GET /: the web page, a thin client of the public API; its files are served from /static.

The page (``service/static/index.html``, ``app.css``, ``app.js``, ``api.js``) is plain HTML, CSS
and ES modules: no build step, no CDN. It calls only the public endpoints (/info, /generate,
/score) with the user's API key, so it needs no key itself. Its response carries a strict
Content-Security-Policy: scripts, styles and requests from this origin only, images also from
``data:`` and ``blob:`` URLs (generated PNGs, previews of uploads), and no framing.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from service.routes import ModelEndpoint

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_URL = "/static"

PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["page"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model


@cache
def _index_html() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """The web page: generate, interpolate, score, and the model card."""
    return HTMLResponse(_index_html(), headers=PAGE_HEADERS)


class RevalidatedStaticFiles(StaticFiles):
    """StaticFiles with ``Cache-Control: no-cache``: browsers revalidate (a cheap 304 by ETag)
    instead of guessing a lifetime from the file's age, so an upgraded service never runs the
    new page with an old script."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def mount_static(app: FastAPI) -> None:
    """Serve ``service/static`` (the page's files and the API docs' assets) at /static."""
    app.mount(STATIC_URL, RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
