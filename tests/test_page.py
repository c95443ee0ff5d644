"""What a person on the page meets, through the real server (gradio_client): bad input told by name,
refusals as one log line, Stop that says where it stopped, only runnable models, honest numbers, the
one reference and its measured accuracy, and the printed reproduction code."""
from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
import torch

import gradio as gr

import lab
import models
import samplers
from views import compare, explain, generate
from tests.app_helpers import read_png, register_test_models, serve, tiny_unet

register_test_models()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=2, preview_fps=10,
                    reference_steps=60)


@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def wait_for_steps(job, count: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while len([o for o in job.outputs() if str(o[1]).startswith(("step ", "1: NFE"))]) < count:
        assert time.time() < deadline, job.outputs()
        time.sleep(0.01)


# 1. bad input is told, never silently changed


def test_no_number_box_clamps_and_each_out_of_range_value_is_refused_by_name(client):
    from gradio_client.exceptions import AppError

    import app

    demo = app.build_app(LIMITS)
    numbers = [c["props"] for c in demo.config["components"] if c["type"] == "number"]
    assert numbers and all(p.get("minimum") is None and p.get("maximum") is None for p in numbers)
    for steps, needle in ((0, "steps=0 is out of range (allowed: 1 <= steps <= 200"),
                          (-5, "steps=-5 is out of range"), (100000, "steps=100000 is out of range"),
                          (2.5, "steps=2.5 must be an integer")):
        with pytest.raises(AppError, match=re.escape(needle)):
            client.predict(model="gaussian", steps=steps, api_name="/generate")
    for steps in (0, 5000):
        with pytest.raises(AppError, match=re.escape(f"setups[0]: steps={steps} is out of range")):
            client.predict(model="gaussian", setups=[{"sampler": "ddim", "steps": steps}], api_name="/compare")


# 2. a refusal is one log line; a fault keeps its traceback


def test_a_refusal_is_one_log_line_without_a_traceback(client, caplog, capfd):
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="lab"):
        with pytest.raises(AppError):
            client.predict(model="gaussian", steps=0, api_name="/generate")
        with pytest.raises(AppError):
            client.predict(model="gaussian", setups=[{"sampler": "nope"}], api_name="/compare")
    lines = [r.getMessage() for r in caplog.records if r.name == "lab"]
    assert len(lines) == 2 and "\n" not in "".join(lines), lines
    assert "steps=0" in lines[0] and "/generate" in lines[0] and "sampler='nope'" in lines[1]
    assert "Traceback" not in capfd.readouterr().err


# 3. Stop says what happened


def test_stop_reports_where_the_run_stopped_and_keeps_its_picture_and_trace(client):
    job = client.submit(model="tiny-slow", sampler="ddim", steps=200, seed=1, api_name="/generate")
    wait_for_steps(job, 3)
    job.cancel()
    preview, status, note, strip, change, norm, table = client.predict(api_name="/stop_generate")
    run = [r for r in lab.RUNS if r.kind == "generate" and r.total_nfe == 200][-1]
    assert run.status == "stopped"
    found = re.fullmatch(r"stopped at step (\d+)/200 \(NFE (\d+)\)", status)
    assert found and int(found[2]) == run.nfe < 200 and int(found[1]) == run.nfe, (status, run)
    assert read_png(preview).shape[1] > 2 * 256                 # noisy | x0 of the last step
    assert [r[0] for r in table["data"]] == list(range(1, run.nfe + 1)) and "Trace of" in note
    assert read_png(strip).shape[0] > 64


def test_stop_on_compare_reports_each_setup(client):
    job = client.submit(model="tiny-slow", setups=[{"sampler": "ddim", "steps": 100}, {"sampler": "heun", "steps": 50}],
                        api_name="/compare")
    deadline = time.time() + 60
    while len(job.outputs()) < 3 and time.time() < deadline:
        time.sleep(0.01)
    job.cancel()
    preview, status = client.predict(api_name="/stop_compare")
    run = [r for r in lab.RUNS if r.kind == "compare"][-1]
    found = re.fullmatch(r"stopped at 1: step (\d+)/100 \(NFE (\d+)\) · 2: step (\d+)/50 \(NFE (\d+)\)", status)
    assert found and run.status == "stopped" and int(found[2]) + int(found[4]) == run.nfe, (status, run)
    assert read_png(preview).shape[0] > 128


# 4. only models that can run here


def test_only_models_that_run_here_are_offered_and_a_failed_load_returns_to_the_working_model(monkeypatch):
    import app

    demo = app.build_app(lab.Limits(max_resolution=64))
    dropdown = next(c["props"] for c in demo.config["components"] if c["props"].get("label") == "Model")
    offered = [choice[1] for choice in dropdown["choices"]]
    assert "google/ddpm-church-256" not in offered and "gaussian" in offered
    hint = next(c["props"]["value"] for c in demo.config["components"] if c["props"].get("elem_id") == "models-missing")
    assert "google/ddpm-church-256" in hint and "images up to 64 px" in hint   # in words, no env var name
    # a model that fails to load: the page goes back to the one that worked, and says so
    changed = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "model_changed")

    def broken():
        raise FileNotFoundError("tiny-broken: its weights are gone")

    lab.register_model("tiny-broken", broken)
    out = changed("tiny-broken", "gaussian", "none", "ddim", *["ddim"] * LIMITS.max_compare)
    assert "tiny-broken: its weights are gone" in out[0]["value"] and "Back to **gaussian**" in out[0]["value"]
    assert out[1]["value"] == "gaussian" and out[2] == "gaussian"


# 5. honest numbers


def test_compare_labels_each_rows_time_as_its_moment_in_the_shared_batch_and_tables_show_4_digits(client):
    preview, status, gallery, table, info = client.predict(
        model="gaussian", seed=1, num_images=16, reference=True, api_name="/compare",
        setups=[{"sampler": "ddim", "steps": 3}, {"sampler": "ddim", "steps": 9}])
    assert "finished at (s into the shared batch)" in table["headers"]
    assert "batch" in status and all("finished_at_seconds" in r for r in info["results"])
    first, second = info["results"]
    assert first["finished_at_seconds"] <= second["finished_at_seconds"] <= info["batched_seconds"]
    # the page shows 4 significant digits; the data (what an API client reads) keep full precision
    shown = table["metadata"]["display_value"]
    at, distance = table["headers"].index("finished at (s into the shared batch)"), len(table["headers"]) - 1
    assert shown[1][distance] == f"{table['data'][1][distance]:.4g}", shown
    assert shown[1][at] == f"{table['data'][1][at]:.4g}", shown


def test_sig_rounds_to_significant_digits():
    from lab.tables import sig

    assert sig(0.000123456) == 0.0001235 and sig(123456.0) == 123500.0 and sig(3) == 3 and sig(None) is None


# 6. one reference, its accuracy measured


def test_the_reference_solve_is_accurate_to_its_stated_accuracy():
    limits = lab.Limits(reference_steps=200)
    cond = lab.Conditioning()
    # against the exact flow on the Gaussian: the solve the lab uses on every network
    gaussian = lab.prepare("gaussian", 256, cond, limits)
    noise, _ = lab.make_noise(0, 256, (2,))
    solve = lab.reference.solver(gaussian.info.scheduler_config, 200)
    with torch.no_grad():
        solved = solve.sample(gaussian.model, noise.double()).double()
        exact = gaussian.net.flow(noise.double(), 999, "clean")
    error = float((solved - exact).norm() / exact.norm())
    # against a 4x finer solve on a (random-weight) network
    net = lab.prepare("tiny-unet", 2, cond, limits)
    x, _ = lab.make_noise(0, 2, net.info.event_shape)
    coarse = lab.reference.solver(net.info.scheduler_config, 200).sample(net.model, x).double()
    fine = lab.reference.solver(net.info.scheduler_config, 800).sample(net.model, x).double()
    network_error = float((coarse - fine).norm() / fine.norm())
    print(f"\n[reference] 200-step {lab.reference.METHOD}: {error:.2e} vs the exact flow (gaussian), "
          f"{network_error:.2e} vs 800 steps (tiny-unet)")
    assert error < lab.reference.ACCURACY and network_error < lab.reference.ACCURACY


def test_compare_and_error_vs_steps_share_one_reference_keyed_by_its_own_key(client):
    lab.reference.cache_clear()
    client.predict(model="tiny-unet", seed=5, num_images=1, reference=True, api_name="/compare",
                   setups=[{"sampler": "ddim", "steps": 4}])
    (key,) = lab.reference.cached()
    assert isinstance(key, lab.reference.Key) and (key.model, key.seed, key.count, key.steps) == ("tiny-unet", 5, 1, 60)


# the printed reproduction code


def test_the_printed_reproduction_code_gives_the_same_image(client):
    preview, status, gallery, settings, code, *trace = client.predict(
        model="tiny-unet", sampler="unipc", steps=6, order=2, eta=0.3, seed=13, num_images=2, class_label=1,
        guidance_scale=2.0, api_name="/generate")
    # the code loads by name through models.load; the test model is registered in-process only
    space = {}
    exec(code.replace("models.load('tiny-unet')", "tiny_unet()"), {"tiny_unet": tiny_unet, "models": models}, space)
    images = space["images"].permute(0, 2, 3, 1).numpy()
    for item, want in zip(gallery, images):
        assert np.array_equal(read_png(item["image"]), want)


# 6. the page's words and defaults, without a browser (issue 15): labels, sampler texts, NFE reasons,
# presets

RAW_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


@pytest.fixture(scope="module")
def page():
    import app

    return app.build_app(lab.Limits())


def test_no_label_is_a_raw_parameter_name(page):
    raw = set(lab.generate_params()) | set(lab.COMPARE_PARAMS) | set(samplers.OPTIONS)
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
    limits = lab.Limits()
    request = compare.arrival_request("gaussian", limits)
    assert len(request.setups) >= 3 and all(s.steps <= 6 for s in request.setups) and request.reference
    for title, text, setups, shared in explain.PRESETS:
        assert text and 2 <= len(setups) <= limits.max_compare
        lab.parse_compare(dict(model="default", setups=setups, **shared), limits)


def test_the_sampler_list_is_grouped_in_families_and_lists_every_sampler_once():
    from views.common import sampler_choices

    grouped = [n for names in explain.GROUPS.values() for n in names]
    assert sorted(grouped) == sorted(samplers.REGISTRY)   # each sampler in exactly one family
    choices = sampler_choices()
    assert [v for _, v in choices] == grouped            # the dropdown goes family by family
    assert choices[0][0].startswith("DDPM / DDIM · ") and choices[0][0].endswith("[ddim]")
