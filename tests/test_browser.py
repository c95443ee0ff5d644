"""The page in a real browser: Debian's chromium driven by playwright (no browser download).

Opens the app as shipped (the embedded default model, or its fallback while that is missing),
clicks Generate, watches the preview image change while the run streams, and saves a
screenshot (pytest's tmp dir, copied to bench/results/screenshot-generate.png for the notes).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
SCREENSHOT_COPY = Path(__file__).resolve().parent.parent / "bench" / "results" / "screenshot-generate.png"

playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (.ci/run installs it with apt-get)", allow_module_level=True)


@pytest.fixture(scope="module")
def page_url():
    import app
    import runner
    from tests.app_helpers import launch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one intra-op thread is faster for these models
    demo = app.build_app(runner.Limits(preview_fps=10))
    url = launch(demo)
    yield url
    demo.close()
    torch.set_num_threads(before)


def test_generate_in_the_browser_streams_changing_previews(page_url, tmp_path):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(page_url, wait_until="domcontentloaded")
            page.wait_for_selector("#generate-button", timeout=60_000)
            # the page-load event fills in the model's classes and the sampler's defaults
            page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=60_000)
            page.click("#generate-button")
            seen = []          # (preview src, status text) each time the preview changed
            deadline = time.time() + 120
            status = ""
            while time.time() < deadline:
                status = page.inner_text("#generate-status")
                img = page.query_selector("#preview img")
                src = img.get_attribute("src") if img else None
                if src and (not seen or seen[-1][0] != src):
                    seen.append((src, status))
                if "done" in status:
                    break
                page.wait_for_timeout(25)
            assert "done" in status, status
            during = [s for s, text in seen if "done" not in text]
            assert len(during) >= 2, seen          # the preview changed while the run was going
            steps = [int(text.split()[1].split("/")[0]) for _, text in seen if text.startswith("step")]
            assert steps == sorted(steps) and steps[-1] > steps[0]
            page.wait_for_selector("#generate-status", timeout=5_000)
            page.wait_for_timeout(500)  # let the gallery images load
            shot = tmp_path / "screenshot-generate.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)
