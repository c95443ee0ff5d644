"""The sampler core: schedule, grids, the run API, randomness and bad input."""
import math

import numpy as np
import pytest
import torch

import samplers
from samplers.grids import build_grid, spaced_timesteps
from samplers.schedule import NoiseSchedule
from conftest import rel_diff, toy_model

T = 1000


# --- the noise schedule --------------------------------------------------------------------
def test_linear_schedule_is_cumulative_product_of_betas():
    s = NoiseSchedule.from_config({"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
    betas = np.linspace(1e-4, 0.02, T)
    assert np.allclose(s.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-6)


def test_zero_terminal_snr_ends_at_pure_noise_and_keeps_the_first_step():
    plain = NoiseSchedule.from_config({})
    z = NoiseSchedule.from_config({"rescale_betas_zero_snr": True})
    assert z.alphas_cumprod[-1] == pytest.approx(0.0, abs=1e-12)
    assert z.alphas_cumprod[0] == pytest.approx(plain.alphas_cumprod[0], rel=1e-9)
    assert math.isinf(z.sigma_at(999.0))


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_timestep_and_noise_level_are_inverse_maps(kind):
    s = NoiseSchedule.from_config({"beta_schedule": kind, "beta_start": 0.00085, "beta_end": 0.012})
    t = np.array([0.0, 0.5, 17.25, 500.0, 998.9])
    assert np.allclose(s.t_of_sigma(s.sigma_at(t)), t, atol=1e-8)
    assert np.allclose(s.t_of_lambda(s.lambda_at(t)), t, atol=1e-8)
    alpha, sigma = s.alpha_sigma_at(t)
    assert np.allclose(alpha**2 + sigma**2, 1.0)


def test_unknown_beta_schedule_is_named():
    with pytest.raises(ValueError, match="beta_schedule='cubic'.*linear, scaled_linear"):
        NoiseSchedule.from_config({"beta_schedule": "cubic"})


# --- timestep grids (diffusers' tables) -------------------------------------------------
def test_diffusers_timestep_tables():
    assert list(spaced_timesteps("linspace", 10, T)) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert list(spaced_timesteps("leading", 10, T)) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert list(spaced_timesteps("trailing", 10, T)) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert list(spaced_timesteps("linspace", 10, T, family="dpm")) == [999, 899, 799, 699, 599, 500, 400,
                                                                       300, 200, 100]
    assert list(spaced_timesteps("leading", 10, T, family="dpm")) == [900, 810, 720, 630, 540, 450, 360,
                                                                      270, 180, 90]


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing", "karras", "logsnr", "quadratic"])
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_grids_never_repeat_and_end_where_asked(spacing, steps):
    s = NoiseSchedule.from_config({})
    for final in ("zero", "sigma_min"):
        if spacing in ("karras", "logsnr") and final == "sigma_min":
            continue  # these grids already end at sigma_min
        try:
            g = build_grid(s, steps, spacing, final=final)
        except ValueError as err:  # a grid ending at t=0 has no further step to sigma_min
            assert "would not be a further step" in str(err)
            continue
        assert g.steps == steps
        assert np.all(np.diff(g.sigma[:-1]) < 0) and np.all(np.diff(g.t[:-1]) < 0)
        assert g.sigma[-1] == (0.0 if final == "zero" else s.sigma_min)


def test_karras_grid_keeps_fractional_timesteps_distinct_where_rounding_would_repeat():
    s = NoiseSchedule.from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012})
    fractional = build_grid(s, 100, "karras")
    rounded = build_grid(s, 100, "karras", round_timesteps=True)
    assert len(np.unique(fractional.t[:-1])) == 100
    assert len(np.unique(rounded.t[:-1])) < 100          # diffusers' form repeats timesteps here...
    assert np.all(np.diff(rounded.sigma[:-1]) < 0)        # ...while the sigmas stay distinct
    model, noise = toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = samplers.create("ddim", 100, s, spacing="karras", round_timesteps=True).sample(model, noise)
    assert torch.isfinite(out).all()


def test_custom_timesteps_are_used_as_given():
    sampler = samplers.create("ddim", 3, spacing="custom", timesteps=[999, 500, 20.5], prev_timestep="grid")
    assert list(sampler.timesteps) == [999, 500, 20.5]


# --- the run API ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["ddim", "ddpm", "pndm", "plms", "f-pndm", "s-pndm"])
def test_run_yields_one_record_per_model_evaluation(method):
    calls = []
    model = toy_model()
    counted = lambda x, t: calls.append(t.clone()) or model(x, t)  # noqa: E731
    sampler = samplers.create(method, 6)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    steps = list(sampler.run(counted, noise, torch.Generator().manual_seed(1)))
    assert [s.nfe for s in steps] == list(range(1, len(calls) + 1))
    assert len(calls) == sampler.nfe and steps[-1].done and not any(s.done for s in steps[:-1])
    assert all(s.x.shape == noise.shape and s.x0.shape == noise.shape for s in steps)
    assert [float(c[0]) for c in calls] == [s.t for s in steps]
    final = sampler.sample(model, noise, torch.Generator().manual_seed(1))
    assert torch.equal(final, steps[-1].x)


@pytest.mark.parametrize("method,options", [("ddpm", {}), ("ddim", {"eta": 1.0})])
def test_a_batch_elements_result_does_not_depend_on_the_rest_of_the_batch(method, options):
    sampler = samplers.create(method, 8, **options)
    model = toy_model()
    noise = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(s) for s in (10, 11, 12)]
    batch = sampler.sample(model, noise, gens)
    alone = sampler.sample(model, noise[1:2], [torch.Generator().manual_seed(11)])
    assert torch.allclose(batch[1:2], alone, atol=1e-6)


def test_same_seed_same_image_and_different_seed_different_image():
    sampler = samplers.create("ddpm", 10)
    model, noise = toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a = sampler.sample(model, noise, torch.Generator().manual_seed(5))
    b = sampler.sample(model, noise, torch.Generator().manual_seed(5))
    c = sampler.sample(model, noise, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_run_together_batches_each_round_and_equals_solo_runs():
    model = toy_model()
    batch_sizes = []
    counted = lambda x, t: batch_sizes.append(x.shape[0]) or model(x, t)  # noqa: E731
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    jobs = [samplers.create("ddim", 5), samplers.create("pndm", 4), samplers.create("ddpm", 8),
            samplers.create("ddim", 10, spacing="trailing", eta=0.5)]
    finals = [None] * len(jobs)
    for round_steps in samplers.run_together(counted, [(s, noise, torch.Generator().manual_seed(3)) for s in jobs]):
        for i, step in enumerate(round_steps):
            if step is not None and step.done:
                finals[i] = step.x
    assert batch_sizes[0] == 4 and len(batch_sizes) == max(s.nfe for s in jobs)
    for sampler, final in zip(jobs, finals):
        solo = sampler.sample(model, noise, torch.Generator().manual_seed(3))
        assert rel_diff(final, solo) < 1e-6


def test_a_non_finite_model_output_names_the_evaluation_and_sampler():
    def broken(x, t):
        return torch.full_like(x, float("nan")) if float(t[0]) < 500 else x * 0.1
    with pytest.raises(samplers.NonFiniteError, match=r"evaluation 6 of sampler 'ddim'.*t=400"):
        samplers.create("ddim", 10).sample(broken, torch.randn(1, 3, 4, 4))


# --- fixes of diffusers breakages -------------------------------------------------------------
def test_fixed_large_log_is_finite_and_equals_fixed_large():
    # diffusers 0.42.1 takes sqrt(log(beta)) here and returns NaN
    model, noise = toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = [samplers.create("ddpm", 10, variance_type=v).sample(model, noise, torch.Generator().manual_seed(1))
            for v in ("fixed_large_log", "fixed_large")]
    assert torch.isfinite(runs[0]).all() and torch.allclose(runs[0], runs[1])


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_pndm_with_fewer_than_four_steps_runs_prk_throughout(steps):
    # diffusers' PNDMScheduler fails for N < 4; with evenly spaced steps ours equals the paper's F-PNDM
    model, noise = toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = samplers.create("pndm", steps, spacing="leading")
    assert ours.nfe == 4 * steps
    out = ours.sample(model, noise)
    assert torch.isfinite(out).all()
    paper = samplers.create("f-pndm", steps, spacing="leading").sample(model, noise)
    # with T//N odd diffusers' half-step lands one timestep off the middle: close, not equal
    assert rel_diff(out, paper) < (1e-6 if (T // steps) % 2 == 0 else 1e-2)


def test_steps_offset_with_as_many_steps_as_train_steps_is_a_clear_error():
    # diffusers indexes past the table here (#10003)
    with pytest.raises(ValueError, match="steps_offset=1 with steps=1000.*past the last train step 999"):
        samplers.create("ddim", 1000, steps_offset=1)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,message", [
    (dict(method="ddim", steps=0), r"steps=0 must be an integer >= 1"),
    (dict(method="ddim", steps=-3), r"steps=-3"),
    (dict(method="ddim", steps=2.5), r"steps=2.5 must be an integer"),
    (dict(method="ddim", steps=True), r"steps=True"),
    (dict(method="ddim", steps=1001), r"steps=1001 .*spacing='leading'"),
    (dict(method="ddim", steps=1001, spacing="trailing"), r"steps=1001 .*exceeds num_train_timesteps=1000"),
    (dict(method="ddim", steps=10, eta=-0.1), r"eta=-0.1 is out of range \(allowed: 0 <= eta <= 1\)"),
    (dict(method="ddim", steps=10, eta=1.5), r"eta=1.5 is out of range"),
    (dict(method="ddim", steps=10, eta=float("nan")), r"eta=nan must be a finite number"),
    (dict(method="ddim", steps=10, eta="0.5"), r"eta='0.5' must be a number"),
    (dict(method="ddim", steps=10, spacing="cosine"), r"spacing='cosine' is not allowed; allowed: leading"),
    (dict(method="euler-ish", steps=10), r"sampler='euler-ish' is unknown; allowed: ddim"),
    (dict(method="ddim", steps=10, order=9), r"option\(s\) order do not apply to sampler 'ddim'"),
    (dict(method="ddpm", steps=10, variance_type="huge"), r"variance_type='huge' is not allowed"),
    (dict(method="ddim", steps=10, prediction_type="score"), r"prediction_type='score' is not allowed"),
    (dict(method="ddim", steps=3, spacing="custom", timesteps=[5, 900, 0]), r"strictly descending"),
    (dict(method="ddim", steps=3, spacing="custom", timesteps=[1200, 5, 0]), r"must lie in \[0, 999\]"),
    (dict(method="ddim", steps=10, spacing="karras", rho=-1), r"rho=-1.0 is out of range"),
    (dict(method="ddim", steps=10, spacing="karras", sigma_min=5.0, sigma_max=1.0), r"need 0 < sigma_min < sigma_max"),
])
def test_bad_input_is_a_value_error_that_says_what_is_allowed(kwargs, message):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=message):
        samplers.create(kwargs.pop("method"), kwargs.pop("steps"), **kwargs)


def test_diffusers_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"_class_name='FancyScheduler'.*DDIMScheduler"):
        samplers.from_diffusers_config({"_class_name": "FancyScheduler"}, 10)
    with pytest.raises(ValueError, match=r"scheduler config key 'timestep_spacing': spacing='middle'"):
        samplers.from_diffusers_config({"_class_name": "DDIMScheduler", "timestep_spacing": "middle"}, 10)
    with pytest.raises(ValueError, match=r"scheduler config: beta_schedule='cubic'"):
        samplers.from_diffusers_config({"_class_name": "DDIMScheduler", "beta_schedule": "cubic"}, 10)
    # keys we do not know are ignored, as diffusers does
    samplers.from_diffusers_config({"_class_name": "DDIMScheduler", "some_future_key": 3}, 10)


def test_config_of_one_class_with_another_method_keeps_the_checkpoints_schedule():
    ddpm_config = {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                   "beta_end": 0.012, "clip_sample": False, "prediction_type": "v_prediction"}
    sampler = samplers.from_diffusers_config(ddpm_config, 10, method="ddim")
    assert sampler.name == "ddim" and sampler.prediction_type == "v_prediction"
    assert sampler.opt("clip_sample") is False
    expected = NoiseSchedule.from_config(ddpm_config).alphas_cumprod
    assert np.allclose(sampler.schedule.alphas_cumprod, expected)


def test_registry_describes_every_sampler():
    rows = {r["name"]: r for r in samplers.describe(10)}
    assert {"ddpm", "ddim", "pndm", "plms", "s-pndm", "f-pndm"} <= set(rows)
    assert rows["pndm"]["nfe"] == 19 and rows["plms"]["nfe"] == 11 and rows["ddim"]["nfe"] == 10
    assert rows["ddpm"]["stochastic"] and not rows["ddim"]["stochastic"] and not rows["plms"]["stochastic"]
    assert all(r["paper"] and r["title"] for r in rows.values())
