"""The page in a real browser: Debian's chromium driven by playwright (no browser download).

Opens the app as shipped (the embedded default model, or its fallback while that is missing),
clicks Generate, watches the preview image change while the run streams, then opens every
explanatory view, runs it and checks that its plot rendered. One screenshot per view (pytest's
tmp dir, copied to bench/results/screenshot-<view>.png as the run's artifacts).
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
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"

playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (.ci/run installs it with apt-get)", allow_module_level=True)


@pytest.fixture(scope="module")
def page_url():
    import app
    import lab
    from tests.app_helpers import launch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one intra-op thread is faster for these models
    demo = app.build_app(lab.Limits(preview_fps=10))
    url = launch(demo)
    yield url
    demo.close()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page(page_url):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(page_url, wait_until="domcontentloaded")
            page.wait_for_selector("#generate-button", timeout=60_000)
            # the page-load event fills in the model's classes and the sampler's defaults
            page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=60_000)
            yield page
        finally:
            browser.close()


def keep_screenshot(page, tmp_path, view: str, selector: str | None = None) -> Path:
    """Save a screenshot of the page (or of one element) and copy it to bench/results/."""
    shot = tmp_path / f"screenshot-{view}.png"
    if selector:
        page.locator(selector).screenshot(path=str(shot))
    else:
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, RESULTS / shot.name)
    return shot


def plot_drawn(page, selector: str, timeout_ms: int = 90_000) -> None:
    """Wait until a native Gradio plot (Vega) has drawn its marks, or an image output holds a picture."""
    page.wait_for_function(
        """sel => { const el = document.querySelector(sel); if (!el) return false;
                    const img = el.querySelector('img'); if (img && img.naturalWidth > 0) return true;
                    // Vega draws marks into svg.marks; Gradio's loading spinner is an svg too, without them
                    return el.querySelectorAll('svg.marks g.role-mark path').length > 0; }""",
        arg=selector, timeout=timeout_ms)


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()
    page.wait_for_timeout(300)


def test_generate_in_the_browser_streams_changing_previews(page, tmp_path):
    open_tab(page, "Generate")
    # enough steps (~4 s) that several previews arrive even while the rest of the suite loads the machine
    page.locator("#generate-steps input").fill("150")
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
    keep_screenshot(page, tmp_path, "generate")
    # the run's trace under it: x0 pictures along the run, and both plots drawn
    plot_drawn(page, "#trace-strip")
    plot_drawn(page, "#trace-change")
    plot_drawn(page, "#trace-norm")
    assert "Committed at NFE" in page.inner_text("#trace-note") or "never settled" in page.inner_text("#trace-note")
    page.locator("#trace-strip").scroll_into_view_if_needed()
    keep_screenshot(page, tmp_path, "trace")


@pytest.mark.parametrize("view, button, plot", [("Schedule", "#schedule-button", "#schedule-plot"),
                                                ("2-D", "#teaching-button", "#teaching-plot"),
                                                ("Error vs steps", "#errors-button", "#errors-plot"),
                                                ("Network vs training set", "#training-set-button",
                                                 "#training-set-picture")])
def test_each_view_runs_and_draws_its_plot_in_the_browser(page, tmp_path, view, button, plot):
    open_tab(page, view)
    page.click(button)
    plot_drawn(page, plot)
    if view == "Network vs training set":   # previews stream into the picture first; the comparison ends it
        page.wait_for_function("() => document.querySelector('#training-set-status')?.innerText.includes('done in')",
                               timeout=90_000)
    page.wait_for_timeout(800)   # the plot's own fade-in, then the picture
    keep_screenshot(page, tmp_path, view.lower().replace(" ", "-").replace("2-d", "teaching"))
    if view == "Error vs steps":   # the screenshot shows the curves arriving; the rest of the runs are not needed
        page.click("#errors-stop")


def test_choosing_a_2d_model_turns_the_error_views_images_into_points(page):
    open_tab(page, "Error vs steps")
    model = page.get_by_label("model", exact=True).first
    model.click()
    model.fill("mixture-2d")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#errors-num-images').innerText"
                           ".includes('num_images (points)')", timeout=30_000)
    assert page.input_value("#errors-num-images input") == "200"
    # back to the default network: the tests after this one run it (a 2-D run is over before a Stop lands)
    model.click()
    model.fill("default")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#errors-num-images').innerText"
                           ".includes('num_images (images)')", timeout=30_000)


def test_an_out_of_range_steps_box_is_told_by_name_and_nothing_runs(page):
    open_tab(page, "Generate")
    runs_before = len(__import__("lab").RUNS)
    box = page.locator("#generate-steps input")
    for typed, needle in (("0", "steps=0 is out of range (allowed: 1 <= steps <= 200"), ("", "steps=''")):
        box.fill(typed)
        page.click("#generate-button")
        page.wait_for_function("n => document.body.innerText.includes(n)", arg=needle, timeout=30_000)
        assert box.input_value() == typed            # the box still shows what was typed: nothing was changed
    page.wait_for_timeout(500)
    assert len(__import__("lab").RUNS) == runs_before   # the run did not start
    for close in page.locator(".toast-close").all():
        close.click()
    box.fill("25")


def test_stop_says_where_the_run_stopped_and_keeps_the_trace(page):
    # a fresh page: the earlier tests leave error toasts and another model behind
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector("#generate-button", timeout=60_000)
    page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=60_000)
    open_tab(page, "Generate")
    page.locator("#generate-steps input").fill("200")
    page.click("#generate-button")
    page.wait_for_function("() => document.querySelector('#generate-status').innerText.startsWith('step ')",
                           timeout=60_000)
    page.wait_for_timeout(300)
    page.click("#generate-stop")
    page.wait_for_function("() => /stopped at step \\d+\\/200 \\(NFE \\d+\\)/.test("
                           "document.querySelector('#generate-status').innerText)", timeout=60_000)
    assert "Trace of" in page.inner_text("#trace-note")
    plot_drawn(page, "#trace-strip")
    plot_drawn(page, "#preview")
    page.locator("#generate-steps input").fill("25")
