"""The k-diffusion family: the same images as diffusers' Euler/Heun/KDPM2/LMS schedulers, the
orders of accuracy on data with an exact flow map, and ancestral draws with the right distribution."""
import math

import numpy as np
import pytest
import torch

import samplers
from conftest import rel_diff, toy_model
from models.analytic import GaussianData
from samplers.karras import lms_coefficients

diffusers = pytest.importorskip("diffusers")

STOCHASTIC = {"EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler"}


def diffusers_loop(scheduler, model, noise, steps, generator=None, **step_kwargs):
    """diffusers' scheduler loop; returns the sample and the number of model calls."""
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    calls = 0
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t.float().reshape(1).expand(x.shape[0]))
        calls += 1
        kw = dict(step_kwargs)
        if generator is not None:
            kw["generator"] = generator
        x = scheduler.step(out, t, x, **kw).prev_sample
    return x, calls


# (scheduler class, config, steps, step() kwargs)
CASES = [
    ("EulerDiscreteScheduler", dict(), 10, {}),
    ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1), 10, {}),
    ("EulerDiscreteScheduler", dict(timestep_spacing="trailing"), 7, {}),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True), 10, {}),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="leading"), 12, {}),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="trailing", sigma_max=20.0), 10, {}),
    ("EulerDiscreteScheduler", dict(use_exponential_sigmas=True, timestep_spacing="trailing"), 10, {}),
    ("EulerDiscreteScheduler", dict(interpolation_type="log_linear"), 10, {}),
    ("EulerDiscreteScheduler", dict(final_sigmas_type="sigma_min", timestep_spacing="leading"), 10, {}),
    ("EulerDiscreteScheduler", dict(final_sigmas_type="sigma_min", use_karras_sigmas=True), 9, {}),
    ("EulerDiscreteScheduler", dict(prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                    timestep_spacing="trailing"), 10, {}),
    ("EulerDiscreteScheduler", dict(prediction_type="v_prediction", timestep_type="continuous"), 8, {}),
    ("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), 25, {}),
    ("EulerDiscreteScheduler", dict(), 10, dict(s_churn=2.0)),
    ("EulerDiscreteScheduler", dict(prediction_type="v_prediction", use_karras_sigmas=True), 10,
     dict(s_churn=5.0, s_tmin=0.5, s_tmax=5.0, s_noise=1.003)),
    ("EulerAncestralDiscreteScheduler", dict(), 10, {}),
    ("EulerAncestralDiscreteScheduler", dict(timestep_spacing="leading", prediction_type="v_prediction"), 10, {}),
    ("EulerAncestralDiscreteScheduler", dict(prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                             timestep_spacing="trailing"), 10, {}),
    ("HeunDiscreteScheduler", dict(), 10, {}),
    ("HeunDiscreteScheduler", dict(timestep_spacing="leading"), 1, {}),
    ("HeunDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="trailing"), 10, {}),
    ("HeunDiscreteScheduler", dict(use_exponential_sigmas=True, prediction_type="v_prediction"), 10, {}),
    ("HeunDiscreteScheduler", dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.8), 10, {}),
    ("KDPM2DiscreteScheduler", dict(), 10, {}),
    ("KDPM2DiscreteScheduler", dict(timestep_spacing="trailing"), 10, {}),
    ("KDPM2DiscreteScheduler", dict(use_karras_sigmas=True), 10, {}),
    ("KDPM2DiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="leading",
                                    prediction_type="v_prediction"), 10, {}),
    ("KDPM2AncestralDiscreteScheduler", dict(), 10, {}),
    ("KDPM2AncestralDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="trailing"), 10, {}),
    ("KDPM2AncestralDiscreteScheduler", dict(timestep_spacing="leading", prediction_type="v_prediction"), 10, {}),
    ("LMSDiscreteScheduler", dict(), 10, dict(order=1)),
    ("LMSDiscreteScheduler", dict(timestep_spacing="trailing"), 10, dict(order=2)),
    ("LMSDiscreteScheduler", dict(prediction_type="v_prediction"), 10, dict(order=3)),
    ("LMSDiscreteScheduler", dict(), 25, {}),  # diffusers' default order 4
    ("LMSDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="leading"), 10, dict(order=4)),
    ("LMSDiscreteScheduler", dict(use_exponential_sigmas=True, prediction_type="sample"), 10, dict(order=2)),
]


def _case_id(case):
    cls, cfg, steps, kw = case
    return ",".join([cls.replace("DiscreteScheduler", ""), f"N={steps}"] + [f"{k}={v}" for k, v in {**cfg, **kw}.items()])


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_diffusers(case):
    cls, cfg, steps, step_kwargs = case
    model = toy_model()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    stochastic = cls in STOCHASTIC or step_kwargs.get("s_churn", 0) > 0
    ref, calls = diffusers_loop(getattr(diffusers, cls)(**cfg), model, noise, steps,
                                torch.Generator().manual_seed(5) if stochastic else None, **step_kwargs)
    options = dict(step_kwargs)   # LMS step(order=...) is our option order
    sampler = samplers.from_diffusers_config(dict(cfg, _class_name=cls), steps, **options)
    got = sampler.sample(model, noise, torch.Generator().manual_seed(5))
    # a run that stops at sigma_min: diffusers returns the VE sample, we the VP one (x / sqrt(1 + k^2))
    got = got * math.sqrt(1 + sampler.grid.sigma[-1] ** 2)
    assert torch.isfinite(ref).all()
    assert sampler.nfe == calls
    assert rel_diff(got, ref) < 1e-4


def test_diffusers_karras_grid_takes_its_range_from_the_timestep_table():
    """use_karras_sigmas with trailing spacing: sigma_min is the trailing table's last sigma (t = 99
    for 10 steps), not the schedule's, and the model gets fractional timesteps."""
    ref = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, timestep_spacing="trailing")
    ref.set_timesteps(10)
    ours = samplers.from_diffusers_config({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True,
                                           "timestep_spacing": "trailing"}, 10)
    np.testing.assert_allclose(ours.sigmas, ref.sigmas.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.timesteps, ref.timesteps.numpy(), rtol=1e-5, atol=1e-3)
    assert ours.sigmas[-2] == pytest.approx(float(ours.schedule.sigma_at(99)), rel=1e-6)
    assert not np.all(ours.timesteps == np.round(ours.timesteps))


def test_kdpm2_karras_rounds_grid_timesteps_but_not_midpoints():
    sampler = samplers.from_diffusers_config({"_class_name": "KDPM2DiscreteScheduler", "use_karras_sigmas": True}, 6)
    times = [s.t for s in sampler.run(toy_model(), torch.randn(1, 2, 4, 4))]
    ref = diffusers.KDPM2DiscreteScheduler(use_karras_sigmas=True)
    ref.set_timesteps(6)
    np.testing.assert_allclose(times, ref.timesteps.numpy(), atol=1e-3)
    assert times[0] == round(times[0]) and times[1] != round(times[1])


# --------------------------------------------------------------------------------------------
# Exact answers: Gaussian data has a closed-form probability-flow map.
def gaussian_data():
    mu = torch.tensor([0.3, -0.5, 0.1, 0.8, -0.2, 0.0])
    variances = torch.tensor([0.04, 0.2, 0.5, 1.0, 1.5, 2.5])
    return GaussianData(mu, variances)


def flow_error(method, steps, **options):
    """Max error of a deterministic run (float64) against the exact flow over the same sigma range."""
    data = gaussian_data()
    sampler = samplers.create(method, steps, data.schedule, spacing="logsnr", final_sigmas_type="sigma_min",
                              **options)
    noise = torch.randn(16, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = sampler.sample(data, noise)
    k0 = sampler.sigmas[0]
    start = noise * samplers.karras.init_scale(sampler) / math.sqrt(1 + k0 * k0)
    # the logsnr grid's last point already is sigma_min: the extra step to it has length 0
    exact = data.flow(start, float(sampler.timesteps[0]), float(sampler.grid.t[-1]))
    return float((got - exact).abs().max())


def measured_order(method, counts=(8, 16, 32, 64), **options):
    errors = [flow_error(method, n + 1, **options) for n in counts]  # n + 1 points: n real steps
    slopes = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    return slopes, errors


@pytest.mark.parametrize("method,order,options", [
    ("euler", 1, {}), ("heun", 2, {}), ("dpm2", 2, {}), ("dpm++2s-a", 2, {"eta": 0.0}),
    ("lms", 2, {"order": 2}), ("euler-a", 1, {"eta": 0.0}), ("dpm2-a", 2, {"eta": 0.0}),
])
def test_order_of_accuracy_on_gaussian_data(method, order, options):
    slopes, errors = measured_order(method, **options)
    assert errors[-1] < errors[0]
    assert slopes[-1] == pytest.approx(order, abs=0.25), (slopes, errors)


def test_lms_gains_order_with_its_order_option():
    """LMS on a log-spaced sigma grid: higher orders give smaller errors and steeper convergence
    (measured slopes at 32 -> 64 steps: about 1.8, 2.6, 3.4 for orders 2, 3, 4; order 4 is still
    approaching 4 there because the first steps run at lower order)."""
    results = {order: measured_order("lms", order=order) for order in (2, 3, 4)}
    for order in (2, 3, 4):
        print(f"lms-{order} slopes", results[order][0], "errors", results[order][1])
    errors = [results[order][1][-1] for order in (2, 3, 4)]
    slopes = [results[order][0][-1] for order in (2, 3, 4)]
    assert errors[0] > 3 * errors[1] and errors[1] > 2 * errors[2]
    assert slopes[0] < slopes[1] < slopes[2]
    assert slopes[2] > 3.0


def test_heun_last_step_is_an_euler_step():
    """With the grid ending at sigma 0 Heun's last step takes no second evaluation: it lands on the
    last evaluation's x0 (an Euler step to sigma 0), and N steps cost 2N - 1 evaluations."""
    model, noise = toy_model(), torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    heun = samplers.create("heun", 6)
    steps = list(heun.run(model, noise))
    assert len(steps) == heun.nfe == 11
    assert steps[-1].sigma == pytest.approx(heun.sigmas[-2])
    torch.testing.assert_close(steps[-1].x, steps[-1].x0, rtol=1e-5, atol=1e-5)
    one_heun = samplers.create("heun", 1).sample(model, noise)
    one_euler = samplers.create("euler", 1).sample(model, noise)
    assert torch.equal(one_heun, one_euler)


def test_heun_with_sigma_min_end_takes_a_full_last_step():
    heun = samplers.create("heun", 6, final_sigmas_type="sigma_min")
    assert heun.nfe == 12 == sum(1 for _ in heun.run(toy_model(), torch.randn(1, 1, 2, 2)))


@pytest.mark.parametrize("ancestral,ode", [("euler-a", "euler"), ("dpm2-a", "dpm2")])
def test_ancestral_with_eta_zero_is_the_ode_solver(ancestral, ode):
    model, noise = toy_model(), torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    for spacing in ("trailing", "karras"):
        a = samplers.create(ancestral, 9, spacing=spacing, eta=0.0).sample(model, noise)
        b = samplers.create(ode, 9, spacing=spacing).sample(model, noise)
        assert rel_diff(a, b) < 1e-6


def test_lms_coefficients_integrate_polynomials_exactly():
    """Order-k weights reproduce the integral of any polynomial of degree < k sampled at the nodes."""
    sigmas = np.array([14.6, 6.5, 3.9, 2.7, 1.9, 1.4, 0.96])
    for order in (1, 2, 3, 4):
        coeffs = lms_coefficients(sigmas, order)
        poly = np.polynomial.Polynomial([0.3, -1.2, 0.5, 0.07][:order])
        antiderivative = poly.integ()
        for i in range(order - 1, len(sigmas) - 1):
            values = [poly(sigmas[i - j]) for j in range(order)]
            got = sum(w * v for w, v in zip(coeffs[i], values))
            assert got == pytest.approx(antiderivative(sigmas[i + 1]) - antiderivative(sigmas[i]), rel=1e-12)


@pytest.mark.parametrize("method,steps,options", [
    ("euler-a", 800, {}), ("dpm2-a", 200, {}), ("dpm++2s-a", 200, {}),
    ("euler", 800, {"s_churn": 40.0, "churn_rule": "karras"}),
])
def test_stochastic_samplers_draw_from_the_data_distribution(method, steps, options):
    """Ancestral / churned runs on Gaussian data: the samples' mean and variance match the data's.
    Their bias shrinks with the step size (euler-a's variance is ~20% low at 50 steps, ~1% at 800;
    the second-order ones are within ~3% at 200), so each runs where its bias is below the check."""
    data = GaussianData(torch.tensor([0.5, -1.0]), torch.tensor([0.25, 1.5]))
    sampler = samplers.create(method, steps, data.schedule, spacing="karras", **options)
    n = 4000
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x = sampler.sample(data, noise, torch.Generator().manual_seed(9))
    mean, var = x.mean(0), x.var(0)
    assert torch.allclose(mean, data.mu, atol=5 * math.sqrt(1.5 / n)), mean
    assert torch.allclose(var / data.lam, torch.ones(2, dtype=torch.float64), atol=0.06), var / data.lam


def test_stochastic_samplers_ignore_the_rest_of_the_batch():
    """With one generator per image, an image does not depend on its batch neighbours."""
    model = toy_model()
    noise = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    for method in ("euler-a", "dpm2-a", "dpm++2s-a"):
        sampler = samplers.create(method, 8, spacing="karras")
        batch = sampler.sample(model, noise, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
        alone = sampler.sample(model, noise[1:2], [torch.Generator().manual_seed(2)])
        assert torch.allclose(batch[1:2], alone, atol=1e-6)


def test_every_sampler_runs_on_every_grid():
    model, noise = toy_model(), torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    grids = [dict(spacing=s) for s in ("leading", "linspace", "trailing", "karras", "logsnr", "quadratic")]
    grids += [dict(spacing="custom", timesteps=[950, 700, 400, 120, 10]), dict(spacing="karras", round_timesteps=True),
              dict(spacing="linspace", interpolation_type="log"), dict(spacing="trailing", final_sigmas_type="sigma_min")]
    for method in ("euler", "euler-a", "heun", "dpm2", "dpm2-a", "lms", "dpm++2s-a"):
        for grid in grids:
            sampler = samplers.create(method, 5, **grid)
            steps = list(sampler.run(model, noise, torch.Generator().manual_seed(0)))
            assert len(steps) == sampler.nfe and steps[-1].done, (method, grid)
            assert torch.isfinite(steps[-1].x).all(), (method, grid)


def test_grids_down_to_sigma_min_may_end_at_sigma_min():
    """A karras/logsnr grid whose last point is the schedule's sigma_min (up to rounding) accepts
    final_sigmas_type='sigma_min' with a zero-length last step, as diffusers does."""
    for steps in range(2, 40):
        for spacing in ("karras", "logsnr"):
            sampler = samplers.create("euler", steps, spacing=spacing, final_sigmas_type="sigma_min")
            assert sampler.sigmas[-1] == pytest.approx(sampler.schedule.sigma_min, rel=1e-9)
            assert np.all(np.diff(sampler.sigmas) <= 0)


def test_zero_snr_schedule_is_clamped_like_diffusers():
    schedule = samplers.NoiseSchedule.from_config({"rescale_betas_zero_snr": True})
    sampler = samplers.create("heun", 5, schedule, spacing="trailing", prediction_type="v_prediction")
    assert sampler.sigmas[0] == pytest.approx(math.sqrt((1 - 2.0**-24) / 2.0**-24))
    assert torch.isfinite(sampler.sample(toy_model(), torch.randn(1, 1, 2, 2))).all()


# --------------------------------------------------------------------------------------------
# Bad input.
@pytest.mark.parametrize("method,options,words", [
    ("euler", {"s_churn": -1.0}, "s_churn"),
    ("euler", {"s_noise": "big"}, "s_noise"),
    ("euler", {"churn_rule": "both"}, "churn_rule"),
    ("lms", {"order": 5}, r"order=5 is out of range"),
    ("heun", {"interpolation_type": "log_linear"}, "interpolation_type"),
    ("heun", {"eta": 0.5}, "eta"),
    ("euler-a", {"eta": 1.5}, "eta"),
    ("dpm2", {"spacing": "karras", "sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min"),
    ("dpm2", {"sigma_range": "middle"}, "sigma_range"),
    ("euler", {"init_noise": "huge"}, "init_noise"),
    ("euler", {"spacing": "karras", "sigma_min": 0.005, "final_sigmas_type": "sigma_min"}, "final_sigmas_type"),
])
def test_bad_options_name_the_parameter(method, options, words):
    with pytest.raises(ValueError, match=words):
        samplers.create(method, 10, **options)


@pytest.mark.parametrize("config,words", [
    ({"use_beta_sigmas": True}, "use_beta_sigmas"),
    ({"use_karras_sigmas": True, "use_exponential_sigmas": True}, "at most one"),
    ({"interpolation_type": "cubic"}, "interpolation_type"),
])
def test_bad_diffusers_configs_name_the_key(config, words):
    with pytest.raises(ValueError, match=words):
        samplers.from_diffusers_config(dict(config, _class_name="EulerDiscreteScheduler"), 10)
