"""Screenshot of the web page on the bundled model: docs/images/web-page.png (README.md).

    .venv/bin/python scripts/page-screenshot.py [--out docs/images/web-page.png]

Starts gan-serve on checkpoints/mnist on a free loopback port, opens the page in Debian's
chromium through Playwright (no `playwright install`), makes a fixed grid, selects one image,
scores it, and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def free_port(preferred: int = 8000) -> int:
    """8000 (as `make serve`, so the shown curl command reads naturally) when free, else any."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gan-serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("gan-serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "web-page.png")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAN_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "--checkpoint",
            str(ROOT / "checkpoints" / "mnist"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(
                viewport={"width": args.width, "height": 900}, reduced_motion="reduce"
            )
            page.goto(url + "/")
            expect(page.locator("#strip img")).to_have_count(8)
            page.fill("#seed", "7")
            page.fill("#n", "15")
            page.click("#generate-button")
            expect(page.locator("#grid img").first).to_have_attribute("data-seed", "7")
            page.locator("#grid .thumb").nth(4).click()
            page.click("#score-selected")
            expect(page.locator("#score-results .score-item")).to_have_count(1)
            page.evaluate("window.scrollTo(0, 0)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
