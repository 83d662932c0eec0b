"""The web page of ``anyclip serve`` in a real headless Chromium (Debian's package) against a real uvicorn server.

Type a query and see the expected picture first; upload a near-duplicate of an indexed picture and see it
first; classify a dropped image on the classify tab, reached with the keyboard. Without chromium (or
Playwright) the test skips with the reason, unless ``ANYCLIP_REQUIRE_BROWSER=1`` (CI), where it fails.
``ANYCLIP_SCREENSHOT=docs/serve.png`` also saves the README's screenshot of the search results.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 180


def _need(reason: str):
    if os.environ.get("ANYCLIP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and ANYCLIP_REQUIRE_BROWSER=1 (apt-get install chromium; pip install playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``anyclip serve --port 0`` in a subprocess; yields ``(base_url, cache folder)``."""
    pytest.importorskip("starlette", reason="anyclip serve needs the [serve] extra")
    cache = tmp_path_factory.mktemp("serve-cache")
    env = dict(os.environ, ANYCLIP_CACHE=str(cache), PYTHONPATH=str(ROOT / "src"), KERAS_BACKEND="jax")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from anyclip.cli import main; sys.exit(main())",
                             "serve", "--port", "0", "--max-batch-size", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, lines = threading.Event(), []

    def watch():
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"running on http://127\.0\.0\.1:\d+", line, re.I):
                found.set()
    threading.Thread(target=watch, daemon=True).start()
    try:
        if not found.wait(STARTUP_S):
            pytest.fail("anyclip serve did not start:\n" + "".join(lines[-30:]))
        port = re.search(r"127\.0\.0\.1:(\d+)", next(line for line in lines if "running on" in line.lower())).group(1)
        yield f"http://127.0.0.1:{port}", cache
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def chromium():
    """The system chromium's path (checked before the server starts); skips, or fails under CI, without it."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _need("no chromium on PATH")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need("Playwright is not installed")
    return executable


@pytest.fixture(scope="module")
def page(chromium, server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 980, "height": 620})
        page.set_default_timeout(30_000)
        page.goto(server[0] + "/")
        yield page
        browser.close()


def test_text_search_then_image_search_then_classify(page, server, tmp_path):
    from playwright.sync_api import expect
    expect(page.locator("#model-line")).to_contain_text("96 images indexed")
    page.get_by_label("Search the index by text").fill("a yellow star")
    page.keyboard.press("Enter")
    first = page.locator("#results li").first
    expect(first.locator(".caption")).to_contain_text("yellow star")
    expect(first.locator("img")).to_have_attribute("src", re.compile("^blob:"))
    if os.environ.get("ANYCLIP_SCREENSHOT"):
        page.screenshot(path=os.environ["ANYCLIP_SCREENSHOT"], type="png")
    # image-to-image: a near-duplicate (cropped, re-encoded JPEG) of the picture ranked third
    third = page.locator("#results li").nth(2).get_attribute("data-id")
    original = next(server[1].glob(f"serve/*/images/{third}.png"))
    duplicate = tmp_path / "near-duplicate.jpg"
    Image.open(original).convert("RGB").crop((1, 1, 63, 63)).save(duplicate, "JPEG", quality=90)
    page.locator("#search-file").set_input_files(str(duplicate))
    expect(page.locator("#search-status")).to_contain_text("near-duplicate.jpg")
    expect(page.locator("#results li").first).to_have_attribute("data-id", third)
    # the classify tab, reached with the keyboard (arrow key between tabs)
    page.locator("#tab-search").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-classify")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-classify")).to_be_visible()
    page.get_by_label("Labels, one per line or comma-separated").fill("blue circle, red square, yellow star")
    page.locator("#classify-file").set_input_files(str(ROOT / "examples" / "shapes" / "red-square.png"))
    page.get_by_role("button", name="Classify", exact=True).press("Enter")
    expect(page.locator("#predictions li").first).to_have_attribute("data-label", "red square")
    expect(page.locator("#classify-status")).to_contain_text("top label: red square")
