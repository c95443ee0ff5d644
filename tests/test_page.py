"""The page's words and defaults, without a browser: labels, sampler texts, NFE reasons, presets."""
from __future__ import annotations

import re

import gradio as gr
import pytest

import runner
import samplers
from views import compare, explain, generate

RAW_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


@pytest.fixture(scope="module")
def page():
    import app

    return app.build_app(runner.Limits())


def test_no_label_is_a_raw_parameter_name(page):
    raw = set(runner.generate_params()) | set(runner.COMPARE_PARAMS) | set(samplers.OPTIONS)
    labels = [b.label for b in page.blocks.values() if isinstance(getattr(b, "label", None), str)]
    assert len(labels) > 40
    bad = [t for t in labels if t in raw or any(RAW_NAME.match(w.strip("():,")) for w in t.split())]
    assert not bad, bad


def test_the_footer_names_no_environment_variable(page):
    texts = " ".join(b.value for b in page.blocks.values() if isinstance(b, gr.Markdown) and isinstance(b.value, str))
    assert "Limits on this machine" in texts
    assert not re.search(r"\b(MAX_[A-Z]+|REFERENCE_STEPS|QUEUE_SIZE|PREVIEW_FPS)\b", texts)


def test_every_sampler_has_its_plain_sentences_and_every_option_a_label():
    assert set(explain.SAMPLERS) == set(samplers.REGISTRY)
    for name in samplers.REGISTRY:
        text = explain.sampler_text(name)
        assert samplers.REGISTRY[name].paper in text and explain.SAMPLERS[name] in text
    missing = [o for o in samplers.OPTIONS if o not in explain.LABELS]
    assert not missing, missing


@pytest.mark.parametrize("name, steps", [("pndm", 5), ("heun", 5), ("plms", 5), ("ddim", 5), ("dpm2", 3)])
def test_the_nfe_note_gives_the_real_evaluations_and_why(name, steps):
    nfe = samplers.create(name, steps=steps).nfe
    note = explain.nfe_note(name, steps, nfe)
    assert f"{nfe} model evaluations" in note
    if nfe == steps:
        assert "one per step" in note
    else:
        assert "one per step" not in note and ":" in note
    if name == "pndm":
        assert nfe == 14 and "Runge-Kutta" in note


def test_grid_options_show_only_for_the_grids_that_read_them():
    assert generate.shown_for_spacing("rho", "karras") and not generate.shown_for_spacing("rho", "trailing")
    assert generate.shown_for_spacing("sigma_max", "logsnr") and not generate.shown_for_spacing("sigma_max", "leading")
    assert generate.shown_for_spacing("eta", "leading")   # not a grid option: always (where the sampler has it)


def test_presets_and_the_opening_comparison_are_valid_requests():
    limits = runner.Limits()
    request = compare.arrival_request("gaussian", limits)
    assert len(request.setups) >= 3 and all(s.steps <= 6 for s in request.setups) and request.reference
    for title, text, setups, shared in explain.PRESETS:
        assert text and 2 <= len(setups) <= limits.max_compare
        runner.parse_compare(dict(model="default", setups=setups, **shared), limits)
