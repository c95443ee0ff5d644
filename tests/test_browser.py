"""The page in a real browser: Debian's chromium driven by playwright (no browser download).

Opens the app as shipped (the embedded default model, or its fallback while that is missing) at
1280x800 and on a 390x844 phone: the comparison the page opens on, the geometry (run button and
preview on the first screen), the labels, Generate streaming and Stop, one run of every tab, the
plots' data read back from the plotly divs, and no uncaught page error throughout. Screenshots go
to pytest's tmp dir and are copied to bench/results/screenshot-<view>.png as the run's artifacts.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}

playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (.ci/run installs it with apt-get)", allow_module_level=True)


@pytest.fixture(scope="module")
def served():
    import app
    import lab
    from tests.app_helpers import launch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one intra-op thread is faster for these models
    limits = lab.Limits(preview_fps=10)
    demo = app.build_app(limits)
    url = launch(demo)
    yield url, limits
    demo.close()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, viewport):
    page = browser.new_page(viewport=viewport)
    page.errors = []   # uncaught exceptions and console errors, as text
    page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: page.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: page.errors.append(f"http {r.status}: {r.url} {(r.request.post_data or '')[:160]}")
            if r.status >= 400 else None)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#compare-button", timeout=60_000)
    # the page-load event fills in the model's classes and the sampler's defaults
    page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def desktop(browser, served):
    page = open_page(browser, served[0], DESKTOP)
    yield page
    page.close()


@pytest.fixture(scope="module")
def phone(browser, served):
    page = open_page(browser, served[0], PHONE)
    yield page
    page.close()


def keep_screenshot(page, tmp_path, view: str, full_page: bool = False) -> Path:
    """Save a screenshot of the page and copy it to bench/results/."""
    shot = tmp_path / f"screenshot-{view}.png"
    page.screenshot(path=str(shot), full_page=full_page)
    assert shot.stat().st_size > 5_000
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, RESULTS / shot.name)
    return shot


def box(page, selector: str) -> dict:
    """The element's rectangle in page coordinates (scroll included)."""
    return page.evaluate("""sel => { const r = document.querySelector(sel).getBoundingClientRect();
                                     return {top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left,
                                             right: r.right, height: r.height}; }""", selector)


def in_viewport(page, selector: str) -> bool:
    return page.evaluate("""sel => { const r = document.querySelector(sel).getBoundingClientRect();
                                     return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight
                                            && r.left >= 0 && r.right <= innerWidth; }""", selector)


def plotly_data(page, selector: str, timeout_ms: int = 90_000) -> list[dict]:
    """The traces a plotly div draws (name, x, y), once it has drawn at least one."""
    page.wait_for_function("sel => (document.querySelector(sel + ' .js-plotly-plot')?.data || []).length > 0",
                           arg=selector, timeout=timeout_ms)
    return page.evaluate("""sel => document.querySelector(sel + ' .js-plotly-plot').data.map(
                              t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])}))""", selector)


def set_steps(page, steps: int) -> None:
    page.fill("#generate-steps input[type=number]", str(steps))
    page.keyboard.press("Enter")
    page.wait_for_function("n => document.querySelector('#generate-nfe').innerText.startsWith(n + ' steps')",
                           arg=steps, timeout=30_000)


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()
    page.wait_for_timeout(300)


def labels_on_screen(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="block-info"], label span'))
                              .filter(e => e.offsetParent !== null).map(e => e.innerText.trim())""")


RAW_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")   # snake_case: an identifier, not words


def assert_words(page) -> None:
    import lab

    raw = set(lab.generate_params()) | set(lab.COMPARE_PARAMS) | {"solver_order", "set_alpha_to_one"}
    labels = labels_on_screen(page)
    assert labels
    # a lower-case parameter name as the whole label ("steps"), or a snake_case identifier anywhere in it
    bad = [t for t in labels if t in raw or any(RAW_NAME.match(w.strip("():,")) for w in t.split())]
    assert not bad, bad


def test_the_page_opens_on_a_comparison_that_shows_samplers_differing(desktop, served, tmp_path):
    import lab
    import views.compare

    page = desktop
    page.wait_for_function("() => document.querySelector('#compare-status')?.innerText.includes('Done in')",
                           timeout=180_000)
    page.wait_for_timeout(500)
    assert page.evaluate("scrollY") == 0
    print(f"\n1280x800 arrival: Compare button {box(page, '#compare-button')}, preview {box(page, '#compare-preview')}")
    assert in_viewport(page, "#compare-button"), box(page, "#compare-button")
    assert in_viewport(page, "#compare-preview img"), box(page, "#compare-preview")
    keep_screenshot(page, tmp_path, "arrival")
    table = page.inner_text("#compare-table")
    shown = views.compare.cached_arrival(lab.initial_model()[0], served[1])
    assert shown is not None
    _, _, gallery, rows, info = shown
    rows = getattr(rows, "data", rows)   # a Styler (4 significant digits shown) around its DataFrame
    assert len(rows) >= 3
    for r in info["results"]:   # every set-up is labelled on the page with its sampler and its NFE
        assert r["sampler"] in table and r["distance"] is not None
    assert {r["sampler"]: r["nfe"] for r in info["results"]}["pndm"] == 14   # its Runge-Kutta warm-up
    # the final pictures of every two set-ups differ visibly: RMS over the images on the 0-255 scale
    finals = {}
    for img, caption in gallery:
        finals.setdefault(caption.split(" · ")[0], []).append(np.asarray(img, np.float64))
    for (a, x), (b, y) in itertools.combinations(finals.items(), 2):
        rms = float(np.sqrt(np.mean((np.stack(x) - np.stack(y)) ** 2)))
        assert rms >= 8, (a, b, rms)
    assert_words(page)


def test_generate_fits_one_screen_streams_and_stops(desktop, tmp_path):
    page = desktop
    open_tab(page, "Generate")
    page.evaluate("window.scrollTo(0, 0)")
    print(f"\n1280x800 Generate: button {box(page, '#generate-button')}, preview {box(page, '#preview')}")
    for selector in ("#generate-button", "#preview"):
        assert in_viewport(page, selector), (selector, box(page, selector))
    assert "model evaluations (NFE)" in page.inner_text("#generate-nfe")
    set_steps(page, 150)   # long enough (~4 s) to watch several previews arrive, also on a busy machine
    page.click("#generate-button")
    seen, status = [], ""
    deadline = time.time() + 120
    while time.time() < deadline:
        status = page.inner_text("#generate-status")
        img = page.query_selector("#preview img")
        src = img.get_attribute("src") if img else None
        if src and (not seen or seen[-1][0] != src):
            seen.append((src, status, in_viewport(page, "#preview")))
        if "done" in status:
            break
        page.wait_for_timeout(25)
    assert "done" in status, status
    during = [(s, visible) for s, text, visible in seen if "done" not in text]
    assert len(during) >= 2, seen          # the preview changed while the run was going ...
    assert all(visible for _, visible in during)   # ... in view all along
    steps = [int(text.split()[1].split("/")[0]) for _, text, _ in seen if text.startswith("step")]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    for selector in ("#trace-change", "#trace-norm"):   # every trace series is drawn
        assert len(plotly_data(page, selector)) >= 2
    assert "Committed at NFE" in page.inner_text("#trace-note") or "never settled" in page.inner_text("#trace-note")
    page.wait_for_timeout(500)
    keep_screenshot(page, tmp_path, "generate")
    page.locator("#generate-gallery").scroll_into_view_if_needed()
    page.locator("#generate-gallery").screenshot(path=str(tmp_path / "screenshot-generate-gallery.png"))
    shutil.copyfile(tmp_path / "screenshot-generate-gallery.png", RESULTS / "screenshot-generate-gallery.png")
    page.locator("#trace-strip").scroll_into_view_if_needed()
    keep_screenshot(page, tmp_path, "trace")
    assert_words(page)
    # Stop: a long run halts and the page says so
    page.evaluate("window.scrollTo(0, 0)")
    set_steps(page, 200)
    page.click("#generate-button")
    page.wait_for_function("() => { const t = document.querySelector('#generate-status').innerText;"
                           "        return t.startsWith('step') && !t.includes('done'); }", timeout=60_000)
    assert in_viewport(page, "#generate-stop")
    # a mouse click where the button is (playwright's wait for a "stable" element can outlast the run)
    page.click("#generate-stop", force=True)
    # the status says where it stopped (lab.Live), and the run's last picture stays
    page.wait_for_function("() => /stopped at step \\d+\\/200 \\(NFE \\d+\\)/.test("
                           "document.querySelector('#generate-status').innerText)", timeout=30_000)
    stopped_at = page.inner_text("#generate-status")
    page.wait_for_timeout(1500)
    assert "done" not in page.inner_text("#generate-status"), (stopped_at, page.inner_text("#generate-status"))
    assert page.inner_text("#generate-status").startswith("stopped at step"), page.inner_text("#generate-status")
    page.evaluate("window.scrollTo(0, 0)")
    keep_screenshot(page, tmp_path, "generate-stopped")
    assert not page.errors, page.errors


def test_schedule_redraws_every_curve_on_show_and_on_axis_change(desktop, tmp_path):
    page = desktop
    open_tab(page, "Schedule")
    page.click("#schedule-button")
    page.wait_for_function("() => (document.querySelector('#schedule-plot .js-plotly-plot')?.data || []).length == 4",
                           timeout=60_000)
    before = plotly_data(page, "#schedule-plot")
    assert len(before) == 4 and all(len(t["y"]) > 0 for t in before)
    page.get_by_label("lambda", exact=True).check()
    page.wait_for_function("y => document.querySelector('#schedule-plot .js-plotly-plot').data[0].y[0] !== y",
                           arg=before[0]["y"][0], timeout=30_000)
    after = plotly_data(page, "#schedule-plot")
    # lambda = -ln sigma: the plotted values are the log10 sigma ones times -ln 10
    assert after[0]["y"] == pytest.approx([-v * np.log(10) for v in before[0]["y"]], rel=1e-6)
    assert len(after) == 4
    page.locator("#schedule-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    keep_screenshot(page, tmp_path, "schedule")
    assert_words(page)


def test_error_vs_steps_draws_every_curve_with_its_fitted_order(desktop, tmp_path):
    page = desktop
    open_tab(page, "Error vs steps")
    page.fill("#errors-nfe textarea, #errors-nfe input", "4, 8, 16")
    page.click("#errors-button")
    page.wait_for_function("() => document.querySelector('#errors-status')?.innerText.includes('done in')",
                           timeout=240_000)
    traces = plotly_data(page, "#errors-plot")
    status = page.inner_text("#errors-status")
    assert len(traces) == 3 and all(len(t["x"]) == 3 for t in traces), traces
    for t in traces:   # the legend's fitted order is the one the text gives
        order = t["name"].split("fitted order ")[1]
        assert f"fitted order {order}" in status
    page.locator("#errors-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    keep_screenshot(page, tmp_path, "error-vs-steps")
    assert_words(page)


@pytest.mark.parametrize("view, button, done", [("2-D", "#teaching-button", "#teaching-plot img"),
                                                ("Network vs training set", "#training-set-button",
                                                 "#training-set-picture img")])
def test_each_other_tab_runs_without_the_shared_model_block(desktop, tmp_path, view, button, done):
    page = desktop
    open_tab(page, view)
    page.wait_for_timeout(300)
    assert not page.is_visible("#model-block")   # these tabs bring their own model
    page.click(button)
    page.wait_for_selector(done, timeout=120_000)
    if view == "2-D":
        assert len(plotly_data(page, "#teaching-ends")) >= 3   # every set-up, the reference and the data
    else:
        page.wait_for_function("() => document.querySelector('#training-set-status')?.innerText.includes('done in')",
                               timeout=120_000)
    page.locator(done).scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    keep_screenshot(page, tmp_path, view.lower().replace(" ", "-").replace("2-d", "teaching"))
    assert_words(page)
    open_tab(page, "Compare")
    assert page.is_visible("#model-block")


def test_compare_preset_fills_the_setups_and_runs(desktop, tmp_path):
    page = desktop
    open_tab(page, "Compare")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#compare-preset input").click()
    page.get_by_role("option", name="PNDM's warm-up costs evaluations").click()
    page.wait_for_function("() => document.querySelector('#compare-preset-note').innerText.includes('Runge-Kutta')",
                           timeout=30_000)
    page.click("#compare-button")
    page.wait_for_function("() => document.querySelector('#compare-table')?.innerText.includes('ipndm')",
                           timeout=180_000)
    table = page.inner_text("#compare-table")
    page.wait_for_timeout(500)
    keep_screenshot(page, tmp_path, "compare-preset")
    assert "plms" in table and "ipndm" in table
    assert not page.errors, page.errors


def test_phone_reaches_the_run_buttons_and_every_tab(phone, tmp_path):
    page = phone
    width = PHONE["width"]
    page.wait_for_function("() => document.querySelector('#compare-status')?.innerText.includes('Done in')",
                           timeout=180_000)
    print(f"\n390x844: Compare button {box(page, '#compare-button')}, scrollWidth "
          f"{page.evaluate('document.documentElement.scrollWidth')}")
    assert box(page, "#compare-button")["bottom"] < 2 * PHONE["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    keep_screenshot(page, tmp_path, "phone", full_page=False)
    tabs = page.get_by_role("tab")
    titles = [tabs.nth(i).inner_text() for i in range(tabs.count())]
    assert len(titles) == 6
    for title in titles:   # one tap each: every tab button is on screen (they wrap, no overflow menu)
        tab = page.get_by_role("tab", name=title, exact=True)
        r = tab.bounding_box()
        assert r and r["x"] >= 0 and r["x"] + r["width"] <= width, (title, r)
        tab.click()
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, title
    open_tab(page, "Generate")
    print(f"390x844: Generate button {box(page, '#generate-button')}")
    assert box(page, "#generate-button")["bottom"] < 2 * PHONE["height"]
    assert not page.errors, page.errors


def test_an_out_of_range_steps_box_is_told_by_name_and_nothing_runs(desktop, served):
    page = desktop
    open_tab(page, "Generate")
    page.evaluate("window.scrollTo(0, 0)")
    runs_before = len(__import__("lab").RUNS)
    box = page.locator("#generate-steps input")
    top = served[1].max_steps
    for typed, needle in (("0", f"steps=0 is out of range (allowed: 1 <= steps <= {top}"), ("", "steps=''")):
        box.fill(typed)
        page.click("#generate-button")
        page.wait_for_function("n => document.body.innerText.includes(n)", arg=needle, timeout=30_000)
        assert box.input_value() == typed            # the box still shows what was typed: nothing was changed
    page.wait_for_timeout(500)
    assert len(__import__("lab").RUNS) == runs_before   # the run did not start
    for close in page.locator(".toast-close").all():
        close.click()
    box.fill("25")


def test_stop_says_where_the_run_stopped_and_keeps_the_trace(desktop):
    page = desktop
    # a fresh page: the earlier tests leave error toasts and another run behind
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector("#compare-button", timeout=60_000)   # the page opens on Compare
    page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=60_000)
    open_tab(page, "Generate")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#generate-steps input").fill("200")
    page.click("#generate-button")
    page.wait_for_function("() => document.querySelector('#generate-status').innerText.startsWith('step ')",
                           timeout=60_000)
    page.wait_for_timeout(300)
    page.click("#generate-stop", force=True)
    page.wait_for_function("() => /stopped at step \\d+\\/200 \\(NFE \\d+\\)/.test("
                           "document.querySelector('#generate-status').innerText)", timeout=60_000)
    assert "Trace of" in page.inner_text("#trace-note")
    assert len(plotly_data(page, "#trace-change")) >= 1
    page.wait_for_function("() => (document.querySelector('#preview img')?.naturalWidth || 0) > 0", timeout=30_000)
    page.locator("#generate-steps input").fill("25")


def test_choosing_a_2d_model_turns_the_error_views_images_into_points(desktop):
    # last of the desktop tests: it leaves the shared model on a 2-D one (runs too fast to Stop)
    page = desktop
    open_tab(page, "Error vs steps")
    model = page.get_by_label("Model", exact=True).first
    model.click()
    model.fill("mixture-2d")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#errors-num-images').innerText.includes('Points')",
                           timeout=30_000)
    assert page.input_value("#errors-num-images input") == "200"
    assert_words(page)


def test_no_uncaught_page_errors_on_the_desktop_page(desktop):
    assert not desktop.errors, desktop.errors


def test_closing_the_page_mid_run_stops_the_run_and_frees_its_place(browser, served):
    import lab

    page = open_page(browser, served[0], DESKTOP)
    open_tab(page, "Generate")
    set_steps(page, 200)
    page.click("#generate-button")
    page.wait_for_function("() => document.querySelector('#generate-status').innerText.startsWith('step ')",
                           timeout=60_000)
    page.close()   # the visitor leaves: Gradio marks the running event not alive, the worker stops
    deadline = time.time() + 20
    while lab.active_runs() and time.time() < deadline:
        time.sleep(0.1)
    assert not lab.active_runs()
    run = next(r for r in reversed(lab.RUNS) if r.kind == "generate")
    assert run.nfe < 200, run
