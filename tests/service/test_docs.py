"""/docs and /redoc work offline: their assets come from this server, never from a CDN.

(The Chromium tests that both pages render with no network are in test_page.py.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.routes.page import STATIC_DIR
from tests.service.conftest import ClientFactory

VENDOR = STATIC_DIR / "vendor"
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_docs_pages_load_their_assets_from_this_server(
    client: TestClient, path: str, expected: set[str]
) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    urls = asset_urls(r.text)
    assert {Path(u).name for u in urls} == expected
    assert not re.search(r"https?://", r.text), "the page names another origin"
    assert "fonts.googleapis" not in r.text
    for url in urls:
        assert url.startswith("/static/vendor/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert CONTENT_TYPES[Path(url).suffix] in asset.headers["content-type"], url
        assert asset.content == (VENDOR / Path(url).name).read_bytes()
    assert "/openapi.json" in r.text
    assert client.get("/openapi.json").status_code == 200


def test_docs_pages_csp_allows_this_origin_and_swaggers_own_script_only(client: TestClient) -> None:
    r = client.get("/docs")
    csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    (inline,) = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert csp["script-src"] == f"'self' 'sha256-{digest}'"
    assert "unsafe" not in csp["script-src"]
    redoc = client.get("/redoc").headers["content-security-policy"]
    assert (
        "script-src 'self';" in redoc
        and "'unsafe-inline'" not in redoc.split("script-src")[1].split(";")[0]
    )


def test_docs_are_open_when_the_api_needs_a_key(make_client: ClientFactory) -> None:
    client = make_client(api_key="secret")
    for path in ("/docs", "/redoc", "/openapi.json", "/static/vendor/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path


def test_vendored_assets_are_the_packages_files_unmodified() -> None:
    """Checksums written by scripts/vendor-docs-assets.sh from the fastapi-offline wheel."""
    lines = (VENDOR / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert re.search(
        r"^package: fastapi-offline==\d+\.\d+\.\d+$", (VENDOR / "README.md").read_text(), re.M
    )
