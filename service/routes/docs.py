"""GET /docs (Swagger UI) and GET /redoc (ReDoc) with their assets served from /static/vendor.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN and are blank without internet.
These pages use the same HTML (``fastapi.openapi.docs``) with local asset URLs; the assets are
the unmodified files of the fastapi-offline package (``service/static/vendor/README.md``). Their
Content-Security-Policy allows this origin only; Swagger UI's one inline start-up script is
allowed by its hash, and both UIs need inline styles.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.routes import ModelEndpoint
from service.routes.page import STATIC_URL

VENDOR_URL = f"{STATIC_URL}/vendor"
SWAGGER_JS = f"{VENDOR_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{VENDOR_URL}/swagger-ui.css"
REDOC_JS = f"{VENDOR_URL}/redoc.standalone.js"
FAVICON = f"{VENDOR_URL}/favicon.png"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(tags=["docs"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model


def docs_csp(html: str) -> str:
    """Same-origin CSP for a docs page; its inline scripts are allowed by their SHA-256."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    ]
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _with_csp(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = docs_csp(bytes(response.body).decode())
    return response


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _with_csp(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - API docs",
            swagger_js_url=f"{root}{SWAGGER_JS}",
            swagger_css_url=f"{root}{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{FAVICON}",
            swagger_ui_parameters=request.app.swagger_ui_parameters,
        )
    )


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _with_csp(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - API reference",
            redoc_js_url=f"{root}{REDOC_JS}",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )
    )
