"""The app: request validation and runs in ``lab`` (no server), then the real Gradio app
launched in-process and driven with ``gradio_client`` as an API user would."""
from __future__ import annotations

import dataclasses

import threading
import time

import numpy as np
import pytest
import torch

import models
import lab
import samplers
from tests.app_helpers import TINY_SCHEDULER, read_png, serve, register_test_models, tiny_unet

register_test_models()


pytestmark = pytest.mark.usefixtures("one_torch_thread")
# visitor_slots: these tests run four requests at once from one client (tests/test_flood.py covers the cap)
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=4, preview_fps=10,
                    reference_steps=60, visitor_slots=8)


def direct_steps(net, method, steps, seed, count, shape, class_index=None, null_label=None, scale=1.0, rescale=0.0,
                 **options):
    """The samplers package called directly, as the README tells a user to repeat an app run: every Step."""
    model = net
    if null_label is not None:
        label = null_label if class_index is None else class_index
        model = samplers.guided(net, torch.tensor(label), scale, rescale, null_label=null_label)
    sampler = samplers.from_diffusers_config(net.scheduler_config, steps, method=method, **options)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((count, *shape), generator=g)
    with torch.no_grad():
        return list(sampler.run(model, noise, generator=g))


def direct_run(*args, **kwargs):
    return direct_steps(*args, **kwargs)[-1].x


def as_png_pixels(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------
# lab, no server

def test_limits_come_from_the_environment_and_bad_values_name_the_variable():
    limits = lab.Limits.from_env({"MAX_STEPS": "50", "MAX_IMAGES": "2", "PREVIEW_FPS": "4"})
    assert (limits.max_steps, limits.max_images, limits.preview_fps) == (50, 2, 4.0)
    assert lab.Limits.from_env({}).max_steps == 200
    with pytest.raises(ValueError, match=r"MAX_STEPS='lots'.*integer"):
        lab.Limits.from_env({"MAX_STEPS": "lots"})
    with pytest.raises(ValueError, match=r"MAX_COMPARE='9'.*out of range.*<= 6"):
        lab.Limits.from_env({"MAX_COMPARE": "9"})


def test_model_ids_that_are_paths_urls_or_off_the_allow_list_are_refused():
    for bad in ("/etc/passwd", "../models", "~/x", "https://huggingface.co/google/ddpm-cifar10-32", "C:\\x"):
        with pytest.raises(ValueError, match="path or URL"):
            lab.check_model(bad, environ={})
    with pytest.raises(ValueError, match="not in the allow-list.*ALLOW_ANY_HUB_MODEL=1"):
        lab.check_model("someone/some-model", environ={})
    assert lab.check_model("someone/some-model", environ={"ALLOW_ANY_HUB_MODEL": "1"}) == "someone/some-model"
    assert lab.check_model("google/ddpm-cifar10-32", environ={}) == "google/ddpm-cifar10-32"
    with pytest.raises(ValueError, match="path or URL"):
        lab.check_model("/tmp/model", environ={"ALLOW_ANY_HUB_MODEL": "1"})


def test_a_hub_model_larger_than_max_resolution_is_refused_before_any_download():
    with pytest.raises(ValueError, match=r"256 px.*MAX_RESOLUTION=64"):
        lab.load_model("google/ddpm-church-256", lab.Limits(max_resolution=64))


def test_missing_default_model_falls_back_to_the_ideal_denoiser_with_a_notice(monkeypatch, tmp_path):
    monkeypatch.setattr(models.embedded, "DEFAULT_MODEL_DIR", tmp_path / "not-trained-yet")
    name, notice = lab.initial_model()
    assert name == lab.FALLBACK_MODEL and "not there yet" in notice
    _, info = lab.load_model("default", LIMITS)
    assert info.name == "default" and info.loaded == "ideal-emoji" and "ideal-emoji" in info.notice
    assert info.classes is not None and len(info.classes) == 9 and not info.guidance


def test_every_option_of_every_registered_sampler_is_a_request_parameter():
    params = lab.generate_params()
    for m in samplers.REGISTRY.values():
        for option in m.options:
            assert lab.param_name(option) in params, (m.name, option)
    assert {"model", "sampler", "steps", "eta", "order", "spacing", "seed"} <= set(params)


def test_options_that_do_not_apply_to_the_sampler_are_not_passed_to_it():
    req = lab.parse_generate({"sampler": "plms", "steps": 10, "eta": 0.7, "order": 3}, LIMITS)
    assert "eta" not in req.setup.options and "order" not in req.setup.options
    req = lab.parse_generate({"sampler": "ddim", "steps": 10, "eta": 0.7}, LIMITS)
    assert req.setup.options == {"eta": 0.7}


def test_generate_streams_every_evaluation_and_throttles_previews():
    req = lab.parse_generate({"model": "tiny-unet", "sampler": "ddim", "steps": 30, "seed": 5}, LIMITS)
    ticks = iter(np.arange(0, 100, 0.004))  # a clock that advances 4 ms per reading
    updates = list(lab.generate(req, lab.Limits(preview_fps=10), clock=lambda: next(ticks)))
    assert [u.nfe for u in updates] == list(range(1, 31))
    assert [u.step for u in updates] == list(range(1, 31))
    shown = [u.nfe for u in updates if u.preview is not None]
    assert shown[0] == 1 and shown[-1] == 30
    seconds = updates[-1].seconds
    assert len(shown) <= seconds * 10 + 2, (shown, seconds)
    assert all(np.diff([u.seconds for u in updates if u.preview is not None][:-1]) >= 0.1 - 1e-9)


def test_compare_runs_batched_yet_each_result_equals_its_solo_run():
    setups = [{"sampler": "ddim", "steps": 8, "eta": 0.6}, {"sampler": "unipc", "steps": 6, "order": 2},
              {"sampler": "plms", "steps": 7}, {"sampler": "heun", "steps": 4}]
    req = lab.parse_compare({"model": "tiny-unet", "setups": setups, "seed": 11, "num_images": 2,
                                "class_label": 2, "guidance_scale": 2.0}, LIMITS)
    calls = []
    original = lab.runs.model_function

    def counting(*args):
        fn = original(*args)

        def model(x, t):
            calls.append(x.shape[0])
            return fn(x, t)
        return model

    lab.runs.model_function = counting
    try:
        final = list(lab.compare(req, LIMITS))[-1]
    finally:
        lab.runs.model_function = original
    net = tiny_unet()
    solo_nfe = 0
    for spec, sample, result in zip(req.setups, final.samples, final.results):
        opts = dict(spec.options)
        expected = direct_run(net, spec.sampler, spec.steps, 11, 2, (3, 8, 8), class_index=2, null_label=3,
                              scale=2.0, **opts)
        assert torch.allclose(sample, expected, rtol=0, atol=1e-5), spec
        solo_nfe += result["nfe"]
    # one forward pass per round, all set-ups still running in it together
    assert len(calls) == max(r["nfe"] for r in final.results) and sum(calls) == 2 * solo_nfe


def test_the_reference_is_the_exact_flow_for_the_gaussian_and_cached_for_networks():
    setups = [{"sampler": "unipc", "steps": 200, "order": 3, "spacing": "trailing"},
              {"sampler": "ddim", "steps": 40, "spacing": "trailing"},
              {"sampler": "ddim", "steps": 5, "spacing": "trailing"}]
    req = lab.parse_compare({"model": "gaussian", "setups": setups, "seed": 3, "num_images": 64,
                                "reference": True}, LIMITS)
    final = list(lab.compare(req, LIMITS))[-1]
    accurate, medium, coarse = (r["distance"] for r in final.results)
    assert accurate < 3e-3 and accurate < medium < coarse
    gaussian = models.load("gaussian")
    noise = torch.randn((64, 2), generator=torch.Generator().manual_seed(3))
    exact = gaussian.flow(noise.double(), 999, "clean")
    assert lab.reference.distance(final.samples[0], exact) == pytest.approx(accurate, abs=1e-6)

    req = lab.parse_compare({"model": "tiny-unet", "setups": setups[2:], "seed": 3, "reference": True}, LIMITS)
    first = list(lab.compare(req, LIMITS))
    second = list(lab.compare(req, LIMITS))
    assert any("reference solve" in u.message for u in first)
    assert not any("reference solve" in u.message for u in second)      # served from the cache
    assert first[-1].results[0]["distance"] == second[-1].results[0]["distance"] > 0
    # tiny-unet's config clips x0, which ddim follows and the ODE reference does not: the note says so
    assert "set-up 1 clip x0" in first[-1].info["reference"]
    assert "clip" not in final.info["reference"]     # the Gaussian model's config does not clip


def test_zero_terminal_snr_needs_a_v_prediction_model():
    req = lab.parse_generate({"model": "gaussian", "rescale_betas_zero_snr": True}, LIMITS)
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True needs a v_prediction model"):
        next(lab.generate(req, LIMITS))
    req = lab.parse_generate({"model": "tiny-unet", "rescale_betas_zero_snr": True, "steps": 5,
                                 "spacing": "trailing"}, LIMITS)
    assert list(lab.generate(req, LIMITS))[-1].done


# ---------------------------------------------------------------------------------------------
# the app, in-process, through gradio_client

@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def statuses(outputs):
    return [o[1] for o in outputs if isinstance(o[1], str) and o[1].startswith("step ")]


def test_api_names_the_generate_parameters_after_the_controls(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    assert names == lab.generate_params()
    assert [p["parameter_name"] for p in api["/compare"]["parameters"]] == list(lab.COMPARE_PARAMS)


def test_generate_streams_each_step_and_matches_the_samplers_package(client):
    job = client.submit(model="tiny-unet", sampler="ddim", steps=12, eta=0.5, spacing="linspace", seed=77,
                        num_images=3, class_label="class 1", guidance_scale=2.5, guidance_rescale=0.4,
                        api_name="/generate")
    outputs = list(job)
    preview, status, gallery, settings, code, *trace = job.result()
    seen = statuses(outputs)
    steps_seen = {int(s.split()[1].split("/")[0]) for s in seen}
    assert steps_seen == set(range(1, 13)), seen            # at least one update per step
    assert "step 12/12" in status and "NFE 12/12" in status
    expected = as_png_pixels(direct_run(tiny_unet(), "ddim", 12, 77, 3, (3, 8, 8), class_index=1, null_label=3,
                                        scale=2.5, rescale=0.4, eta=0.5, spacing="linspace"))
    assert len(gallery) == 3
    for item, want in zip(gallery, expected):
        assert np.array_equal(read_png(item["image"]), want)
    assert settings["seed"] == 77 and settings["options"]["eta"] == 0.5 and settings["class_label"] == "class 1"
    assert "manual_seed(77)" in code and "method='ddim'" in code and "eta=0.5" in code
    assert read_png(preview).shape[1] > 2 * 256     # noisy | x0 side by side, upscaled from 8 px


def test_generate_returns_the_runs_trace_one_row_per_evaluation(client):
    note, strip, change_plot, norm_plot, table = client.predict(
        model="tiny-unet", sampler="unipc", steps=20, seed=5, num_images=2, api_name="/generate")[5:]
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [r["nfe"] for r in rows] == list(range(1, 21))
    # the same numbers as lab.analysis.trace on image #0 of the same run made directly
    steps = direct_steps(tiny_unet(), "unipc", 20, 5, 2, (3, 8, 8), null_label=3)
    first = [dataclasses.replace(s, x=s.x[:1], x0=s.x0[:1]) for s in steps]
    expected = lab.analysis.trace(first)["rows"]
    for got, want in zip(rows, expected):
        for key in ("sigma", "x_rms", "x0_rms", "x0_to_final"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, got, want)
    assert rows[0]["change"] is None and rows[-1]["x0_to_final"] == pytest.approx(0, abs=1e-6)
    commit = lab.analysis.commit_index(expected, lab.COMMIT_FRACTION)
    assert f"Committed at NFE {commit}" in note
    # one strip of about TRACE_THUMBNAILS x0 pictures (64 px, 4 px apart, text under each)
    pictures = (read_png(strip).shape[1] + 4) // 68
    assert 10 <= pictures <= lab.TRACE_THUMBNAILS + 1 and read_png(strip).shape[0] == 64 + 28
    # the plotly figures: one trace per series, every point of the run (a change of 0 has no logarithm)
    from views.plots import curves

    change, norm = curves(change_plot), curves(norm_plot)
    assert len(change) == 3 and all(len(c["x"]) >= 18 for c in change.values())   # x, x0 and x0-to-final
    assert set(norm) == {"sample x", "predicted x0"}
    assert norm["sample x"]["y"] == pytest.approx([r["x_rms"] for r in rows], rel=1e-9)


def test_generate_on_a_2d_model_returns_the_points(client):
    settings = client.predict(model="mixture-2d", sampler="unipc", steps=8, seed=2, num_images=300,
                              api_name="/generate")[3]
    expected = direct_run(models.load("mixture-2d"), "unipc", 8, 2, 300, (2,))
    assert np.allclose(np.array(settings["points"]), expected.double().numpy(), atol=1e-6)


def test_compare_returns_one_result_per_setup_equal_to_the_solo_runs(client):
    setups = [{"sampler": "ddpm", "steps": 10}, {"sampler": "unipc", "steps": 8, "order": 3},
              {"sampler": "euler", "steps": 6}]
    job = client.submit(model="tiny-unet", setups=setups, seed=9, num_images=2, class_label=0,
                        guidance_scale=3.0, api_name="/compare")
    outputs = list(job)
    preview, status, gallery, table, info = job.result()
    assert len(outputs) >= 10 and len(info["results"]) == 3 and len(table["data"]) == 3
    assert len(gallery) == 3 * 2
    net = tiny_unet()
    for i, (spec, result) in enumerate(zip(setups, info["results"])):
        opts = lab.kernel_options({k: v for k, v in spec.items() if k not in ("sampler", "steps")})
        solo = as_png_pixels(direct_run(net, spec["sampler"], spec["steps"], 9, 2, (3, 8, 8), class_index=0,
                                        null_label=3, scale=3.0, **opts))
        got = np.stack([read_png(g["image"]) for g in gallery[2 * i:2 * i + 2]])
        # batched forward passes round differently in the last float bit: at most one PNG level apart
        assert np.abs(got.astype(int) - solo.astype(int)).max() <= 1, spec
        assert result["nfe"] == samplers.from_diffusers_config(TINY_SCHEDULER, spec["steps"], method=spec["sampler"],
                                                               **opts).nfe


BAD_INPUTS = [
    (dict(steps=0), ["steps=0", "1 <= steps <= 200"]),
    (dict(steps=100000), ["steps=100000", "steps <= 200"]),
    (dict(steps="many"), ["steps='many'", "integer"]),
    (dict(eta=1.5), ["eta=1.5", "0 <= eta <= 1"]),
    (dict(eta="lots"), ["eta='lots'", "number"]),
    (dict(order=9), ["order=9", "order <= 4"]),
    (dict(sampler="warp-drive"), ["sampler='warp-drive'", "allowed", "ddim"]),
    (dict(spacing="sideways"), ["spacing='sideways'", "allowed", "trailing"]),
    (dict(model="nonexistent-model"), ["model='nonexistent-model'", "allowed", "default"]),
    (dict(model="/etc/passwd"), ["model='/etc/passwd'", "path or URL", "allowed"]),
    (dict(model="https://example.com/model"), ["path or URL", "allowed"]),
    (dict(model="someone/any-model"), ["someone/any-model", "allow-list", "ALLOW_ANY_HUB_MODEL=1"]),
    (dict(num_images=50), ["num_images=50", "MAX_IMAGES"]),
    (dict(seed=-1), ["seed=-1", "0 <= seed"]),
    (dict(class_label="dragons"), ["class_label='dragons'", "allowed", "class 0"]),
    (dict(guidance_scale=99), ["guidance_scale=99", "<= 20"]),
]


def test_each_bad_input_is_an_error_naming_what_is_allowed_and_the_server_keeps_serving(client):
    from gradio_client.exceptions import AppError

    for kwargs, needles in BAD_INPUTS:
        args = dict(model="tiny-unet", sampler="ddim", steps=4, seed=0)
        args.update(kwargs)
        with pytest.raises(AppError) as err:
            client.predict(api_name="/generate", **args)
        for needle in needles:
            assert needle in str(err.value), (kwargs, str(err.value))
    with pytest.raises(AppError, match=r"setups has 7 entries.*1 to 6"):
        client.predict(model="tiny-unet", setups=[{"sampler": "ddim"}] * 7, api_name="/compare")
    with pytest.raises(AppError, match=r"setups\[1\]: sampler='nope'"):
        client.predict(model="tiny-unet", setups=[{"sampler": "ddim"}, {"sampler": "nope"}], api_name="/compare")
    status = client.predict(model="tiny-unet", sampler="ddim", steps=4, api_name="/generate")[1]
    assert "step 4/4" in status


def test_stop_ends_a_run_within_a_step_and_the_next_run_works(client):
    job = client.submit(model="tiny-slow", sampler="ddim", steps=200, seed=1, api_name="/generate")
    deadline = time.time() + 60
    while len(statuses(job.outputs())) < 3 and time.time() < deadline:
        time.sleep(0.02)
    assert len(statuses(job.outputs())) >= 3
    job.cancel()
    time.sleep(1.0)
    record = [r for r in lab.RUNS if r.kind == "generate" and r.total_nfe == 200][-1]
    stopped_at = record.nfe
    time.sleep(0.5)
    assert record.status == "stopped" and record.nfe == stopped_at < 200
    assert not [r for r in lab.active_runs() if r.kind == "generate"]
    assert "step 3/3" in client.predict(model="tiny-unet", steps=3, api_name="/generate")[1]


def test_four_concurrent_same_seed_requests_give_identical_images(client):
    args = dict(model="tiny-slow", sampler="ddpm", steps=15, seed=4242, num_images=2, class_label=2,
                guidance_scale=1.5)
    results, errors = [None] * 4, []
    overlap = threading.Barrier(4)

    def one(i):
        try:
            overlap.wait(timeout=30)
            results[i] = client.predict(api_name="/generate", **args)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    started = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    runs = [r for r in lab.RUNS if r.kind == "generate" and r.started >= started and r.total_nfe == 15]
    assert len(runs) == 4
    # the four ran at the same time (MAX_CONCURRENCY=4 here), not one after another
    assert max(r.started for r in runs) < min(r.finished for r in runs), runs
    images = [np.stack([read_png(g["image"]) for g in res[2]]) for res in results]
    for other in images[1:]:
        assert np.array_equal(images[0], other)
    expected = as_png_pixels(direct_run(tiny_unet(), "ddpm", 15, 4242, 2, (3, 8, 8), class_index=2, null_label=3,
                                        scale=1.5))
    assert np.array_equal(images[0], expected)
