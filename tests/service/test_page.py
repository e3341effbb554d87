"""The web page at /: its files and headers (TestClient), and the page itself in Chromium.

The browser tests drive Debian's ``chromium`` (``apt-get install chromium``) with Playwright's
Python package against the real ``gan-serve`` process on a free loopback port, serving the
bundled model. One browser and one server are shared by the module; every test gets a fresh
browser context (so a fresh sessionStorage) in which any request that leaves the server's origin
is aborted and recorded. Without playwright or chromium these tests skip and say why.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.routes.page import PAGE_CSP, STATIC_DIR
from tests.service.conftest import ROOT, ClientFactory, ServerProcess
from training.data import load_mnist

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
BUNDLED = ROOT / "checkpoints" / "mnist"
MAX_IMAGES = 16  # GAN_MAX_IMAGES of the test server: n = 17 must be refused with a 422
API_KEY = "page-test-key-7c1e"

# ----------------------------------------------------------------------------------------------
# the files and headers (no browser)
# ----------------------------------------------------------------------------------------------

PAGE_FILES = ["index.html", "app.js", "api.js", "app.css", "favicon.svg"]


def test_page_is_served_with_a_strict_csp(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert csp == PAGE_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/app.js"></script>' in r.text


def test_page_html_has_nothing_inline_that_the_csp_would_block() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "asset from another origin"


def test_page_scripts_never_write_html_or_keep_the_key_beyond_the_tab() -> None:
    for name in ("app.js", "api.js"):
        js = (STATIC_DIR / name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in js, f"{name} uses {sink}"
        assert "localStorage" not in js, f"{name} uses localStorage"
        assert not re.search(r"https?://", js), f"{name} names another origin"


def test_page_assets_are_served_with_their_types(client: TestClient) -> None:
    html = client.get("/").text
    referenced = set(re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html))
    assert {"/static/app.js", "/static/app.css", "/static/favicon.svg"} <= referenced
    # app.js imports api.js
    assert 'from "./api.js"' in client.get("/static/app.js").text
    types = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for url in referenced | {"/static/api.js"}:
        r = client.get(url)
        assert r.status_code == 200, url
        assert types[Path(url).suffix] in r.headers["content-type"], (url, r.headers)
    assert client.get("/static/nothing.js").status_code == 404
    r = client.get("/static/app.js")
    assert r.headers["cache-control"] == "no-cache"  # revalidate: never an old script
    assert (
        client.get("/static/app.js", headers={"If-None-Match": r.headers["etag"]}).status_code
        == 304
    )
    assert set(PAGE_FILES) <= {p.name for p in STATIC_DIR.iterdir()}


def test_page_is_open_when_the_api_needs_a_key(make_client: ClientFactory) -> None:
    client = make_client(api_key=API_KEY)
    assert client.get("/info").status_code == 401
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200


# ----------------------------------------------------------------------------------------------
# Chromium
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need playwright: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


def _serve(args: list[str], env: dict[str, str]) -> Iterator[str]:
    server = ServerProcess([*args, "--host", "127.0.0.1", "--port", "0"], env)
    try:
        yield server.wait_started()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(browser: Browser) -> Iterator[str]:
    """The bundled model, at most MAX_IMAGES images per request."""
    yield from _serve(["--checkpoint", str(BUNDLED)], {"GAN_MAX_IMAGES": str(MAX_IMAGES)})


@pytest.fixture(scope="module")
def rgb_server(browser: Browser, rgb_ckpt_dir: Path) -> Iterator[str]:
    """A tiny 32x32 RGB model without real_scores or an evaluation baseline."""
    yield from _serve(["--checkpoint", str(rgb_ckpt_dir)], {})


@pytest.fixture(scope="module")
def key_server(browser: Browser, ckpt_dir: Path) -> Iterator[str]:
    """A tiny model behind an API key."""
    yield from _serve(["--checkpoint", str(ckpt_dir)], {"GAN_API_KEY": API_KEY})


CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@dataclass
class Tab:
    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    external: list[str] = field(default_factory=list)  # requests that left the origin

    def csp_violations(self) -> list[str]:
        result: list[str] = self.page.evaluate("window.__cspViolations")
        return result

    def open(self, path: str = "/") -> Page:
        self.page.goto(self.origin + path)
        return self.page


def _tab(browser: Browser, origin: str, **context: Any) -> Iterator[Tab]:
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    tab = Tab(page, origin)
    page.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))

    def same_origin_only(route: Route) -> None:
        url = route.request.url
        if url == origin or url.startswith(origin + "/"):
            route.continue_()
        else:
            tab.external.append(url)
            route.abort()

    ctx.route("**/*", same_origin_only)
    ctx.add_init_script(CSP_WATCH)
    page.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        ctx.close()


@pytest.fixture
def tab(browser: Browser, server: str) -> Iterator[Tab]:
    yield from _tab(browser, server, viewport={"width": 1280, "height": 900})


def data_url_bytes(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix) :])


def grid_seeds(page: Page) -> list[int]:
    return [
        int(s)
        for s in page.locator("#grid img").evaluate_all("els => els.map(e => e.dataset.seed)")
    ]


def grid_srcs(page: Page) -> list[str]:
    srcs: list[str] = page.locator("#grid img").evaluate_all("els => els.map(e => e.src)")
    return srcs


def open_settled(tab: Tab) -> Page:
    """Open the page and wait for the grid and the path it makes on its own: later requests then
    run alone (images of concurrent requests may share a batch, which can move a pixel by one
    gray level; see docs/api.md), so their bytes can be compared exactly."""
    from playwright.sync_api import expect

    page = tab.open()
    expect(page.locator("#grid img")).to_have_count(MAX_IMAGES)
    expect(page.locator("#strip img")).to_have_count(8)
    expect(page.locator("#interpolate-button")).to_be_enabled()
    return page


def generate(page: Page, seed: int, n: int) -> None:
    from playwright.sync_api import expect

    page.fill("#seed", str(seed))
    page.fill("#n", str(n))
    page.click("#generate-button")
    expect(page.locator("#grid img")).to_have_count(n)
    expect(page.locator("#grid img").first).to_have_attribute("data-seed", str(seed))


def test_page_loads_without_errors_and_shows_the_model(tab: Tab) -> None:
    from playwright.sync_api import expect

    sent: list[dict[str, Any]] = []
    tab.page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/generate") else None
        ),
    )
    page = tab.open()
    # The page generates a grid and an interpolation on its own.
    expect(page.locator("#grid img")).to_have_count(MAX_IMAGES)
    expect(page.locator("#strip img")).to_have_count(8)
    # The walk as the server's animated GIF (format gif), one frame per image, looping; Pause
    # shows the first frame still.
    animation = page.locator("#animation-img")
    expect(animation).to_have_attribute("src", re.compile("^blob:"))
    assert animation.evaluate("e => e.complete && e.naturalWidth") == 28
    (asked,) = [body for body in sent if body.get("format") == "gif"]
    assert asked == {
        "interpolate": {"from_seed": 1, "to_seed": 2, "steps": 8, "frame_ms": 140},
        "format": "gif",
    }
    gif = Image.open(io.BytesIO(httpx.post(tab.origin + "/generate", json=asked).content))
    assert gif.format == "GIF" and gif.n_frames == 8 and gif.info["loop"] == 0
    assert gif.info["duration"] == 140
    expect(page.locator("#animation-save")).to_have_attribute("href", re.compile("^blob:"))
    page.click("#animation-toggle")
    expect(page.locator("#animation-toggle")).to_have_text("Play")
    first_frame = page.locator("#strip img").first.get_attribute("src") or ""
    expect(animation).to_have_attribute("src", first_frame)
    page.click("#animation-toggle")
    expect(animation).to_have_attribute("src", re.compile("^blob:"))
    # The default path crosses classes (seed 1's class to seed 2's), and the caption says so.
    expect(page.locator("#path-caption")).to_contain_text(
        "8 images on the path from seed 1 (class 1) to seed 2 (class 2): slerp between the "
        "latents and a mix of the two classes. The ends are exactly the images"
    )
    first = page.locator("#grid img").first
    assert re.fullmatch(r"Generated image, seed \d+", first.get_attribute("alt") or "")
    assert first.evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
    assert first.evaluate("e => e.getBoundingClientRect().width") == 84  # 28 px x 3
    assert page.locator("#auth").is_hidden()
    # The label control shows exactly when the model is class-conditional (/info lists classes).
    # The sampling methods come from /info; those this checkpoint cannot run (drs and mh without
    # a calibration) are shown disabled, with the reason.
    info = httpx.get(tab.origin + "/info").json()
    assert page.locator("#label-field").is_visible() == bool(info["classes"])
    methods = info["generate"]["methods"]
    expect(page.locator("#method-field")).to_be_visible()
    expect(page.locator("#method option")).to_have_count(len(methods))
    disabled = page.locator("#method option").evaluate_all(
        "els => els.filter(e => e.disabled).map(e => Number(e.value))"
    )
    assert disabled == [i for i, m in enumerate(methods) if not m["available"]]
    off = [m["name"] for m in methods if not m["available"]]
    if off:
        expect(page.locator("#method-hint")).to_contain_text(
            f"Not on this checkpoint: {', '.join(off)} (needs a calibrated discriminator"
        )
    assert page.input_value("#method") == "0"  # plain, the default: sent as no method at all

    # The model card shows /info's record, the metrics beside their real-vs-real baselines.
    expect(page.locator("#model-line")).to_contain_text(info["model"]["model_id"])
    fid_row = page.locator('#card-body tr[data-metric="fid"] td')
    expect(fid_row.nth(0)).to_have_text(f"{info['metrics']['fid']:.3g}")
    expect(fid_row.nth(1)).to_have_text(f"{info['metrics']['eval']['baseline']['fid']:.3g}")
    card = page.locator("#card-body")
    # The served checkpoint is one of the run's, not a run cut short.
    expect(card).to_contain_text(
        f"Checkpointat step {info['model']['step']:,} of a {info['training']['steps']:,}-step run"
    )
    expect(card).not_to_contain_text("planned")
    # Drop-downs are as wide as their longest option ("Any class (random)"): nothing cut off.
    for select in ("#label", "#from-label", "#to-label", "#method"):
        spare = page.locator(select).evaluate(
            """e => { const c = document.createElement("canvas").getContext("2d");
                const s = getComputedStyle(e); c.font = `${s.fontSize} ${s.fontFamily}`;
                const widest = Math.max(...[...e.options].map((o) => c.measureText(o.text).width));
                return e.clientWidth - widest; }"""
        )
        assert spare >= 16, (select, spare)  # room for the text and the arrow
    minutes = round(info["training"]["train_seconds"] / 60)
    expect(card).to_contain_text(
        f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"
    )
    expect(card).to_contain_text(info["dataset"]["heldout_source"])
    expect(card).to_contain_text(f"Images per request{MAX_IMAGES}")
    # ... and the checkpoint's own sample grid (image seeds 0..n-1), drawn through the API.
    grid = page.locator("#card-body img.card-grid-image")
    expect(grid).to_have_attribute(
        "alt", f"{MAX_IMAGES} samples, image seeds 0 to {MAX_IMAGES - 1}"
    )
    expect(grid).to_have_js_property("complete", True)
    assert grid.evaluate("img => img.naturalWidth") > 0

    assert tab.errors == []
    assert tab.csp_violations() == []
    assert tab.external == []


def test_generate_shows_n_images_and_the_seed_changes_them(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = open_settled(tab)
    generate(page, 1000, 5)
    assert grid_seeds(page) == [1000, 1001, 1002, 1003, 1004]
    first = grid_srcs(page)
    generate(page, 2000, 5)
    second = grid_srcs(page)
    assert not set(first) & set(second)
    generate(page, 1000, 5)  # same seed, same images
    assert grid_srcs(page) == first

    # Keyboard: Tab onto an image and press Enter to select it.
    page.locator("#grid .thumb").nth(1).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#detail-img")).to_have_attribute("alt", "Generated image, seed 1001")

    page.click("#new-seed")
    expect(page.locator("#grid img").first).not_to_have_attribute("data-seed", "1000")
    seed = int(page.input_value("#seed"))
    expect(page.locator("#grid img").first).to_have_attribute("data-seed", str(seed))
    assert tab.errors == []


def parse_curl(command: str) -> tuple[str, dict[str, Any]]:
    url = re.search(r"-X POST (\S+)", command)
    body = re.search(r"-d '([^']*)'", command)
    assert url and body, command
    parsed: dict[str, Any] = json.loads(body.group(1))
    return url.group(1), parsed


def test_curl_command_returns_the_same_bytes_and_the_image_can_be_scored(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = open_settled(tab)
    page.check("#use-truncation")
    page.fill("#truncation", "0.8")
    generate(page, 77, 4)
    image = page.locator("#grid .thumb").nth(2)
    image.click()
    expect(image).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#detail-facts")).to_contain_text("Seed79")
    command = page.inner_text("#detail-curl")
    url, body = parse_curl(command)
    assert url == tab.origin + "/generate"
    assert body == {"seed": 79, "n": 1, "format": "png", "truncation": 0.8}
    assert "Authorization" not in command
    shown = data_url_bytes(page.locator("#grid img").nth(2).get_attribute("src") or "")
    replay = httpx.post(url, json=body)
    assert replay.status_code == 200 and replay.headers["content-type"] == "image/png"
    assert replay.content == shown

    # An end of the interpolation path reproduces by its latent (and, for a class-conditional
    # model, its class: a latent carries no seed to derive it from), and is the seed's image.
    page.locator("#strip .thumb").nth(7).click()
    url, body = parse_curl(page.inner_text("#detail-curl"))
    assert set(body) == {"z", "format", "label"} and body["label"] == 2  # seed 2 mod 10
    assert len(body["z"][0]) == 64
    on_path = data_url_bytes(page.locator("#strip img").nth(7).get_attribute("src") or "")
    assert httpx.post(url, json=body).content == on_path
    assert httpx.post(url, json={"seed": 2}).content == on_path
    # An image between two classes: no single image request makes it; the command returns the
    # whole path, with this image at its index.
    page.locator("#strip .thumb").nth(3).click()
    expect(page.locator("#curl-label")).to_contain_text("whole path as JSON")
    expect(page.locator("#detail-facts")).to_contain_text("Class0.571 1 + 0.429 2")
    url, body = parse_curl(page.inner_text("#detail-curl"))
    assert body == {"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 8}, "format": "json"}
    on_path = data_url_bytes(page.locator("#strip img").nth(3).get_attribute("src") or "")
    images = httpx.post(url, json=body).json()["images"]
    assert base64.b64decode(images[3]["png_base64"]) == on_path

    # "Score it with D" sends the selected image to /score.
    image.click()
    page.click("#score-selected")
    result = page.locator("#score-results .score-item")
    expect(result).to_have_count(1)
    expect(result).to_contain_text("seed-79.png")
    api = httpx.post(tab.origin + "/score", files={"files": ("x.png", shown, "image/png")})
    scored = api.json()["results"][0]
    expect(result.locator(".score-logit")).to_have_text(f"D's logit: {scored['logit']:.3f}")
    # The bundled model has an encoder: the class it reads is shown (seed 79 is drawn as a 9).
    assert scored["class_source"] == "encoder"
    expect(result.locator(".score-class")).to_contain_text(
        f"Read as {scored['class_name']} by the encoder"
    )
    assert tab.errors == []


def test_a_sampling_method_is_sent_shown_and_reproducible(tab: Tab) -> None:
    """langevin on the bundled model: its options from /info, the per-image statistics, the
    curl command that returns the image, and a 422 over a cost cap next to its control."""
    from playwright.sync_api import expect

    info = httpx.get(tab.origin + "/info").json()
    methods = info["generate"]["methods"]
    index = next(i for i, m in enumerate(methods) if m["name"] == "langevin")
    page = open_settled(tab)
    page.select_option("#method", str(index))
    expect(page.locator("#method-hint")).to_contain_text(methods[index]["description"])
    expect(page.locator("#method-option-steps")).to_have_value("20")
    page.fill("#method-option-steps", "2")
    generate(page, 31, 2)
    expect(page.locator("#sampling-status")).to_contain_text("langevin: 2 steps per image")
    assert page.locator("#grid img").first.get_attribute("alt") == (
        "Generated image, seed 31, method langevin"
    )
    page.locator("#grid .thumb").nth(1).click()
    facts = page.locator("#detail-facts")
    expect(facts).to_contain_text("Samplinglangevin")
    expect(facts).to_contain_text("Steps2")
    expect(facts).to_contain_text("D's logit")
    url, body = parse_curl(page.inner_text("#detail-curl"))
    assert body == {
        "seed": 32,
        "n": 1,
        "format": "png",
        "method": "langevin",
        "method_options": {"steps": 2, "step_size": 0.01, "noise": 1},
    }
    shown = data_url_bytes(page.locator("#grid img").nth(1).get_attribute("src") or "")
    replay = httpx.post(url, json=body)
    assert replay.status_code == 200 and replay.headers["X-Sampling-Method"] == "langevin"
    diff = np.abs(
        np.asarray(Image.open(io.BytesIO(replay.content)), dtype=np.int16)
        - np.asarray(Image.open(io.BytesIO(shown)), dtype=np.int16)
    )
    assert diff.max() <= 1  # a batch of 1 vs 2 may move the last bits (docs/api.md)

    cap = info["limits"]["max_langevin_steps"]
    page.fill("#method-option-steps", str(cap + 1))
    page.click("#generate-button")
    error = page.locator('[data-error-for="method_options.steps"]')
    expect(error).to_contain_text(f"at most {cap} per image (GAN_MAX_LANGEVIN_STEPS)")
    expect(page.locator("#method-option-steps")).to_have_attribute("aria-invalid", "true")
    assert not [e for e in tab.errors if "422" not in e]


def _mnist_png(mnist_dir: Path, index: int) -> bytes:
    digits = load_mnist(mnist_dir, split="test").images
    buf = io.BytesIO()
    Image.fromarray(digits[index, 0].numpy(), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_scoring_real_mnist_digits_shows_logit_and_percentile(
    tab: Tab, mnist_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    digit = tmp_path / "mnist-test-0.png"
    digit.write_bytes(_mnist_png(mnist_dir, 0))
    api = httpx.post(
        tab.origin + "/score", files={"files": (digit.name, digit.read_bytes(), "image/png")}
    ).json()
    expected = api["results"][0]
    page = tab.open()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#score-explain")).to_contain_text(
        "real training data rather than this generator's samples"
    )
    page.set_input_files("#score-files", str(digit))
    item = page.locator("#score-results .score-item")
    expect(item).to_have_count(1)
    expect(item).to_contain_text(digit.name)
    expect(item.locator(".score-logit")).to_have_text(f"D's logit: {expected['logit']:.3f}")
    percentile = expected["realness_percentile"]
    expect(item.locator(".score-percentile")).to_have_text(
        f"Higher than {percentile:.1f} % of held-out real images."
    )
    expect(page.locator("#score-notes")).to_contain_text(api["percentile_reference"]["source"])
    bar = item.locator(".bar")
    expect(bar).to_have_attribute("aria-valuenow", f"{percentile:.1f}")
    width = bar.locator(".fill").evaluate(
        "e => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width"
    )
    assert abs(width * 100 - percentile) < 1
    calibrated = expected["calibrated_probability"]
    if calibrated is None:  # a checkpoint without a calibration
        assert item.locator(".score-calibrated").count() == 0
    else:
        expect(item.locator(".score-calibrated")).to_have_text(
            f"Calibrated probability of real: {100 * calibrated:.1f} %"
        )

    # Dropping files works too (two digits at once).
    pngs = [_mnist_png(mnist_dir, i) for i in (1, 2)]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type: "image/png" }));
            }
            return dt;
        }""",
        [[f"dropped-{i}.png", base64.b64encode(p).decode()] for i, p in enumerate(pngs)],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#score-results .score-item")).to_have_count(2)
    expect(page.locator("#score-results")).to_contain_text("dropped-1.png")

    # A file that is not an image: the API's 422 shows next to the file control.
    page.set_input_files(
        "#score-files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    expect(page.locator('#score-form [data-error-for="files"]')).to_contain_text("notes.txt")
    assert not [e for e in tab.errors if "422" not in e]


BUSY_WATCH = """() => {
  window.__projectBusy = [];
  const form = document.getElementById("project-form");
  new MutationObserver(() => window.__projectBusy.push(
    [form.getAttribute("aria-busy"), document.getElementById("project-status").textContent]
  )).observe(form, { attributes: true, attributeFilter: ["aria-busy"] });
}"""


def test_projecting_an_image_shows_its_reconstruction_and_walks_to_a_seed(
    tab: Tab, mnist_dir: Path, tmp_path: Path
) -> None:
    """Upload -> POST /project -> the upload beside G's reconstruction with the numbers; then
    the walk from the projected latent (in its class) to a seed, as the server's GIF."""
    from playwright.sync_api import expect

    info = httpx.get(tab.origin + "/info").json()
    digit = tmp_path / "mnist-test-3.png"
    digit.write_bytes(_mnist_png(mnist_dir, 3))
    page = open_settled(tab)
    expect(page.locator("#project")).to_be_visible()
    expect(page.locator('.top nav a[href="#project"]')).to_be_visible()
    steps = info["project"]["steps"]
    expect(page.locator("#project-steps")).to_have_value(str(min(steps["default"], steps["max"])))
    expect(page.locator("#project-steps")).to_have_attribute("max", str(steps["max"]))
    assert page.locator("#project-label-field").is_visible() == bool(info["classes"])
    assert page.locator("#projection").is_hidden()

    page.fill("#project-steps", "5")
    page.evaluate(BUSY_WATCH)
    with page.expect_response("**/project") as answer:
        page.set_input_files("#project-file", str(digit))
    response = answer.value
    assert response.status == 200
    sent = response.request.post_data_buffer or b""
    assert b'name="steps"\r\n\r\n5\r\n' in sent and b'name="label"' not in sent
    data = response.json()
    assert data["steps"] == 5
    reconstruction = page.locator("#project-reconstruction")
    expect(reconstruction).to_have_attribute("src", f"data:image/png;base64,{data['image']}")
    expect(page.locator("#projection")).to_be_visible()
    for img in (reconstruction, page.locator("#project-upload")):
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("e => e.naturalWidth") == 28
        assert img.evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
        assert img.evaluate("e => e.getBoundingClientRect().width") == 168  # 28 px x 3 x 2
    expect(page.locator("#project-upload")).to_have_attribute("src", re.compile("^blob:"))
    # Busy while the request ran: aria-busy on the form and a status line, both gone after.
    busy = page.evaluate("window.__projectBusy")
    assert busy[0] == ["true", f"Projecting {digit.name}…"], busy
    assert busy[-1][0] is None
    expect(page.locator("#project-status")).to_have_text("")

    def fact(key: str) -> str:
        return page.locator(f'#project-facts dd[data-fact="{key}"]').inner_text()

    assert fact("file") == digit.name
    assert data["class_name"] is not None  # the bundled model is class-conditional
    assert fact("class") == data["class_name"]
    assert fact("mse") == f"{data['mse']:.3g}"
    assert data["distance_name"] and data["distance"] is not None
    assert fact("distance") == f"{data['distance']:.3g} ({data['distance_name']})"
    for key in ("upload", "reconstruction"):
        view = data[key]
        assert fact(key) == (
            f"{view['logit']:.3f} (higher than {view['realness_percentile']:.1f} % of held-out "
            "real images)"
        )
    assert fact("seconds") == f"{data['seconds']:.2f} s"
    start = "the encoder's guess" if data["start"] == "encoder" else "random starts"
    assert fact("search") == f"5 steps × {data['restarts']} restarts from {start}"

    # The walk: from z in the projection's class to seed 3 (in its own class), as a GIF.
    expect(page.locator("#walk-seed")).to_have_value("1")
    page.fill("#walk-seed", "3")
    with page.expect_response(
        lambda r: r.url.endswith("/generate") and r.request.method == "POST"
    ) as walk:
        page.click("#walk-button")
    assert walk.value.request.post_data_json == {
        "interpolate": {
            "from_z": data["z"],
            "to_seed": 3,
            "steps": MAX_IMAGES,
            "frame_ms": 140,
            "from_label": data["label"],
        },
        "format": "gif",
    }
    assert walk.value.headers["content-type"] == "image/gif"
    asked = walk.value.request.post_data_json
    gif = Image.open(io.BytesIO(httpx.post(tab.origin + "/generate", json=asked).content))
    assert gif.format == "GIF" and gif.n_frames == MAX_IMAGES
    img = page.locator("#walk-img")
    expect(img).to_have_attribute("src", re.compile("^blob:"))
    page.wait_for_function("() => document.getElementById('walk-img').naturalWidth > 0")
    assert img.evaluate("e => e.complete && e.naturalWidth") == 28
    assert "seed 3" in (img.get_attribute("alt") or "")
    expect(page.locator("#walk-save")).to_have_attribute("href", re.compile("^blob:"))
    # Paused, the walk shows its first frame: the reconstruction.
    page.click("#walk-toggle")
    expect(page.locator("#walk-toggle")).to_have_text("Play")
    expect(img).to_have_attribute("src", f"data:image/png;base64,{data['image']}")
    assert tab.errors == [] and tab.csp_violations() == [] and tab.external == []


def test_projection_errors_show_in_its_panel(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = open_settled(tab)
    # Not an image: the API's 422 (its detail names the `file` field) next to the file picker.
    page.set_input_files(
        "#project-file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}]
    )
    error = page.locator('#project-form [data-error-for="file"]')
    expect(error).to_contain_text("notes.txt")
    expect(page.locator("#project-status")).to_have_text("")
    assert page.locator("#projection").is_hidden()
    expect(page.locator("#project-file")).to_be_enabled()
    # More steps than GAN_MAX_PROJECT_STEPS: a 422 next to the steps control.
    cap = httpx.get(tab.origin + "/info").json()["project"]["steps"]["max"]
    page.fill("#project-steps", str(cap + 1))
    page.set_input_files(
        "#project-file",
        files=[
            {"name": "digit.png", "mimeType": "image/png", "buffer": _png_of(np.zeros((28, 28)))}
        ],
    )
    steps_error = page.locator('#project-form [data-error-for="steps"]')
    expect(steps_error).to_contain_text("GAN_MAX_PROJECT_STEPS")
    expect(page.locator("#project-steps")).to_have_attribute("aria-invalid", "true")
    expect(error).to_have_text("")  # the earlier error is gone
    assert not [e for e in tab.errors if "422" not in e]
    assert tab.csp_violations() == []


def _png_of(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_api_key_is_asked_for_once_and_kept_in_the_tab_only(
    browser: Browser, key_server: str
) -> None:
    from playwright.sync_api import expect

    for tab in _tab(browser, key_server):
        page = tab.open()
        expect(page.locator("#auth")).to_be_visible()
        assert page.locator("#app").is_hidden()
        expect(page.locator("#api-key")).to_be_focused()

        page.fill("#api-key", "wrong")
        page.click("#auth-form button[type=submit]")
        expect(page.locator("#auth-form .error")).to_contain_text("did not accept")
        expect(page.locator("#auth")).to_be_visible()

        page.fill("#api-key", API_KEY)
        page.press("#api-key", "Enter")
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#grid img")).not_to_have_count(0)
        assert page.evaluate("sessionStorage.getItem('gan-serve.api-key')") == API_KEY
        assert page.evaluate("localStorage.length") == 0
        expect(page.locator("#card-body")).to_contain_text("API keyrequired")

        page.locator("#grid .thumb").first.click()
        command = page.inner_text("#detail-curl")
        assert '-H "Authorization: Bearer $GAN_API_KEY"' in command
        assert API_KEY not in command

        # A reload in the same tab keeps the key; a new tab (context) asks again.
        page.reload()
        expect(page.locator("#grid img")).not_to_have_count(0)
        assert page.locator("#auth").is_hidden()
        # Only the refused requests logged errors (the browser's "401" lines).
        assert [e for e in tab.errors if "401" not in e] == []
        assert tab.external == []


def test_api_errors_show_next_to_the_control_that_caused_them(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.open()
    expect(page.locator("#grid img")).to_have_count(MAX_IMAGES)
    page.fill("#n", str(MAX_IMAGES + 1))
    page.click("#generate-button")
    error = page.locator('#generate-form [data-error-for="n"]')
    expect(error).to_have_text(
        f"n is {MAX_IMAGES + 1}, at most {MAX_IMAGES} images per request (GAN_MAX_IMAGES)"
    )
    expect(page.locator("#n")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#grid img")).to_have_count(MAX_IMAGES)  # the old grid stays

    page.fill("#steps", "1")
    page.click("#interpolate-button")
    expect(page.locator('#interpolate-form [data-error-for="interpolate.steps"]')).to_contain_text(
        "greater than or equal to 2"
    )

    # 503 with Retry-After (faked: a busy server is hard to make on cue).
    page.route(
        "**/generate",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "3", "Content-Type": "application/json"},
            body=json.dumps({"detail": "the server is at capacity"}),
        ),
    )
    page.fill("#n", "2")
    page.click("#generate-button")
    expect(page.locator('#generate-form .actions [data-error-for=""]')).to_have_text(
        "The server is busy: the server is at capacity (try again in 3 s)"
    )
    expect(page.locator('#generate-form [data-error-for="n"]')).to_have_text("")

    # 413 from /score (faked too: the real limit is 10 MiB).
    page.route(
        "**/score",
        lambda route: route.fulfill(
            status=413, json={"detail": "request body is larger than 10 bytes (GAN_MAX_BODY_BYTES)"}
        ),
    )
    page.set_input_files(
        "#score-files", files=[{"name": "big.png", "mimeType": "image/png", "buffer": b"x" * 64}]
    )
    expect(page.locator('#score-form [data-error-for=""]')).to_have_text(
        "Too much data: request body is larger than 10 bytes (GAN_MAX_BODY_BYTES)"
    )
    assert tab.csp_violations() == []


def test_conditional_model_fields_from_info_are_picked_up(tab: Tab) -> None:
    """Fields a later /info may add (classes, generate.methods, kind), faked here."""
    from playwright.sync_api import expect

    classes = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    methods = [
        {"name": "plain", "description": "G alone"},
        {
            "name": "d-guided",
            "description": "resample latents by D's score",
            "options": {"strength": {"type": "number", "default": 0.5, "minimum": 0, "maximum": 1}},
        },
    ]

    def info(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body.update(classes=classes, kind="conditional-dcgan")
        body["generate"]["methods"] = methods
        route.fulfill(response=response, json=body)

    sent: list[dict[str, Any]] = []

    def generate_route(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        sent.append(dict(body))
        for key in ("label", "method", "method_options"):  # unconditional, no "d-guided" here
            body.pop(key, None)
        route.fulfill(response=route.fetch(post_data=json.dumps(body)))

    tab.page.route("**/info", info)
    tab.page.route("**/generate", generate_route)
    page = tab.open()
    expect(page.locator("#label-field")).to_be_visible()
    expect(page.locator("#label option")).to_have_count(len(classes) + 1)
    expect(page.locator("#method-field")).to_be_visible()
    expect(page.locator("#model-line")).to_contain_text("conditional-dcgan, conditional")
    expect(page.locator("#card-body")).to_contain_text("conditional-dcgan")
    expect(page.locator("#grid img")).to_have_count(MAX_IMAGES)

    page.select_option("#label", label="three")
    page.select_option("#method", label="d-guided")
    expect(page.locator("#method-option-strength")).to_have_value("0.5")
    page.fill("#method-option-strength", "0.25")
    generate(page, 5, 2)
    assert sent[-1] == {
        "seed": 5,
        "n": 2,
        "label": 3,
        "method": "d-guided",
        "method_options": {"strength": 0.25},
        "format": "json",
    }
    assert page.locator("#grid img").first.get_attribute("alt") == (
        "Generated image, seed 5, class three, method d-guided"
    )
    page.locator("#grid .thumb").nth(1).click()
    expect(page.locator("#detail-facts")).to_contain_text("Classthree")
    _, body = parse_curl(page.inner_text("#detail-curl"))
    assert body == {
        "seed": 6,
        "n": 1,
        "format": "png",
        "label": 3,
        "method": "d-guided",
        "method_options": {"strength": 0.25},
    }
    assert tab.errors == []


def test_interpolation_classes_are_picked_and_sent(tab: Tab) -> None:
    """The class at each end of the path (a conditional model): sent as from_label/to_label;
    the same class at both ends gives that class's images, the ends those of the two seeds."""
    from playwright.sync_api import expect

    sent: list[dict[str, Any]] = []
    page = open_settled(tab)
    page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/generate") else None
        ),
    )
    expect(page.locator("#from-label-field")).to_be_visible()
    expect(page.locator("#to-label option")).to_have_count(11)
    expect(page.locator("#from-label option").first).to_have_text("The seed's own class")
    page.fill("#from-seed", "3")
    page.fill("#to-seed", "8")
    page.fill("#steps", "4")
    page.select_option("#from-label", label="7")
    page.select_option("#to-label", label="7")
    page.click("#interpolate-button")
    expect(page.locator("#path-caption")).to_contain_text(
        "4 images on the path from seed 3 (class 7) to seed 8 (class 7): slerp between the "
        "latents. The ends"
    )
    expect(page.locator("#strip img")).to_have_count(4)
    spec = {"from_seed": 3, "to_seed": 8, "steps": 4, "from_label": 7, "to_label": 7}
    assert {"interpolate": spec, "format": "json"} in sent
    assert {"interpolate": {**spec, "frame_ms": 140}, "format": "gif"} in sent
    srcs = page.locator("#strip img").evaluate_all("els => els.map(e => e.src)")
    for k, seed in ((0, 3), (3, 8)):
        alone = httpx.post(tab.origin + "/generate", json={"seed": seed, "label": 7})
        assert data_url_bytes(srcs[k]) == alone.content
    page.locator("#strip .thumb").nth(1).click()
    expect(page.locator("#detail-facts")).to_contain_text("Class7")
    expect(page.locator("#curl-label")).to_contain_text("returns exactly this image")
    expect(page.locator("#animation-img")).to_have_attribute("src", re.compile("^blob:"))
    assert tab.errors == [] and tab.csp_violations() == []


def test_page_works_with_a_checkpoint_that_records_less(browser: Browser, rgb_server: str) -> None:
    """RGB, 32 px, no held-out scores, metrics without a baseline: fewer things to show."""
    from playwright.sync_api import expect

    for tab in _tab(browser, rgb_server):
        page = tab.open()
        expect(page.locator("#grid img")).to_have_count(16)
        first = page.locator("#grid img").first
        assert first.evaluate("e => e.getBoundingClientRect().width") == 96  # 32 px x 3
        expect(page.locator("#model-line")).to_contain_text("32×32 colour")
        fid = page.locator('#card-body tr[data-metric="fid"] td')
        expect(fid.nth(0)).to_have_text("99.5")
        expect(fid.nth(1)).to_have_text("–")
        expect(page.locator("#card-body")).to_contain_text(
            "None: scores come without a percentile."
        )

        png = data_url_bytes(first.get_attribute("src") or "")
        page.set_input_files(
            "#score-files", files=[{"name": "rgb.png", "mimeType": "image/png", "buffer": png}]
        )
        item = page.locator("#score-results .score-item")
        expect(item).to_contain_text("No realness percentile")
        assert item.locator(".bar").count() == 0
        expect(page.locator("#score-notes")).to_contain_text("stores no real_scores")
        assert tab.errors == [] and tab.csp_violations() == [] and tab.external == []


@pytest.mark.parametrize("kind", ["vae", "ebm"])
def test_page_offers_only_what_the_model_kind_can_do(
    browser: Browser, tmp_path: Path, kind: str
) -> None:
    """A vae has no D: no score panel; an ebm has no latents: no interpolation and nothing to
    project to (its /info "project" is null). Generating works on both, with no errors."""
    from playwright.sync_api import expect

    from gan.samplers import EBMSearch
    from tests.service.conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / kind, kind=kind, ebm=EBMSearch(steps=2))
    for origin in _serve(["--checkpoint", str(ckpt)], {}):
        for tab in _tab(browser, origin):
            page = tab.open()
            expect(page.locator("#grid img")).to_have_count(16)
            expect(page.locator("#model-line")).to_contain_text(kind)
            for section, hidden in (
                ("#score", kind == "vae"),
                ("#interpolate", kind == "ebm"),
                ("#project", kind == "ebm"),  # /info "project": null
            ):
                link = page.locator(f'.top nav a[href="{section}"]')
                if hidden:
                    expect(page.locator(section)).to_be_hidden()
                    expect(link).to_be_hidden()
                else:
                    expect(page.locator(section)).to_be_visible()
                    expect(link).to_be_visible()
            assert tab.errors == [] and tab.csp_violations() == [] and tab.external == []


def test_swagger_ui_renders_with_no_network(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.open("/docs")
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("gan-serve")
    expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/generate")).to_be_visible()
    assert tab.external == []
    assert tab.errors == []
    assert tab.csp_violations() == []


# ReDoc's sidebar always asks for the Redocly logo from its CDN; the CSP blocks it (so nothing
# leaves the machine) and ReDoc hides the image.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_redoc_renders_with_no_network(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.open("/redoc")
    expect(page.locator("redoc h1", has_text="gan-serve")).to_be_visible()
    expect(page.locator("redoc h2", has_text="Generate images")).to_be_visible()
    assert tab.external == []
    assert set(tab.csp_violations()) <= {f"img-src {REDOC_LOGO}"}
    assert [e for e in tab.errors if REDOC_LOGO not in e] == []


@pytest.fixture(scope="module")
def multi_server(browser: Browser, ckpt_dir: Path) -> Iterator[str]:
    """Two models: the bundled one (the default) and a tiny one."""
    yield from _serve(
        ["--checkpoint", f"mnist={BUNDLED}", "--checkpoint", f"tiny={ckpt_dir}"],
        {"GAN_MAX_IMAGES": str(MAX_IMAGES)},
    )


def test_model_picker_switches_every_panel_to_the_picked_model(
    browser: Browser, multi_server: str, server: str
) -> None:
    from playwright.sync_api import expect

    for tab in _tab(browser, multi_server):
        page = open_settled(tab)
        picker = page.locator("#model-picker")
        expect(picker).to_be_visible()
        expect(picker.locator("option")).to_have_count(2)
        expect(picker).to_have_value("mnist")
        tiny = httpx.get(multi_server + "/info", params={"model": "tiny"}).json()
        picker.select_option("tiny")
        expect(page.locator("#model-line")).to_contain_text(tiny["model"]["model_id"])
        # The switch redraws the grid and the path (submitted as the model line changes): let
        # those finish, so that the request below is the last to draw the grid.
        for form in ("#generate-form", "#interpolate-form"):
            expect(page.locator(form)).not_to_have_attribute("aria-busy", "true")
        generate(page, 5, 2)
        shown = data_url_bytes(page.locator("#grid img").first.get_attribute("src") or "")
        page.locator("#grid .thumb").first.click()
        url, body = parse_curl(page.inner_text("#detail-curl"))
        assert body["model"] == "tiny"
        assert httpx.post(url, json=body).content == shown
        alone = httpx.post(multi_server + "/generate", json={"seed": 5, "model": "tiny"})
        assert alone.content == shown
        assert tab.errors == []
    # A single-model server shows no picker.
    for tab in _tab(browser, server):
        page = open_settled(tab)
        expect(page.locator("#model-pick")).to_be_hidden()
