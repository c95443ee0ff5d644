"""The DPM-Solver family: diffusers' images where diffusers works, exact convergence orders on
Gaussian data, DPM-Solver-fast's exact budget, adaptive error control, and the diffusers
breakages we do not copy."""
import logging
import math
import warnings

import numpy as np
import pytest
import torch

import samplers
from samplers.evaluation import fit_order
from conftest import rel_diff, toy_model
from models.analytic import GaussianData, GaussianMixture

try:
    import diffusers
except ImportError:  # the parity tests need the oracle; the rest do not
    diffusers = None
needs_diffusers = pytest.mark.skipif(diffusers is None, reason="diffusers is the parity oracle")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # diffusers deprecates algorithm types

MULTI, SINGLE = "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"


def diffusers_loop(scheduler, model, noise, steps, seed, begin_index=None, stop_before_last=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated algorithm types, singlestep's config rewrites
        logging.disable(logging.WARNING)
        try:
            scheduler.set_timesteps(steps)
            if begin_index is not None:
                scheduler.set_begin_index(begin_index)
            generator = torch.Generator().manual_seed(seed)
            x = noise * scheduler.init_noise_sigma
            timesteps = scheduler.timesteps[:-1] if stop_before_last else scheduler.timesteps
            for t in timesteps:
                out = model(scheduler.scale_model_input(x, t), t.float().reshape(1).expand(x.shape[0]))
                x = scheduler.step(out, t, x, generator=generator).prev_sample
        finally:
            logging.disable(logging.NOTSET)
    return x


def ours(cls, case, model, noise, seed, **options):
    sampler = samplers.from_diffusers_config(dict(config_of(case), _class_name=cls), case["steps"], **options)
    return sampler.sample(model, noise, torch.Generator().manual_seed(seed)), sampler


def config_of(case):
    return {k: v for k, v in case.items() if k != "steps"}


def case_id(case):
    return ",".join(f"{k}={v}" for k, v in case.items())


def noise_for(seed, shape=(2, 3, 8, 8), dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------
# Parity with diffusers.
MULTISTEP_CASES = [
    dict(steps=10),
    dict(steps=10, solver_order=1),
    dict(steps=10, solver_order=3),
    dict(steps=20, solver_order=3),
    dict(steps=10, solver_type="heun"),
    dict(steps=20, solver_order=3, solver_type="heun", lower_order_final=False),
    dict(steps=10, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=10, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=1),
    dict(steps=20, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3),
    dict(steps=15, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_type="heun"),
    dict(steps=10, algorithm_type="sde-dpmsolver++"),
    dict(steps=20, algorithm_type="sde-dpmsolver++", solver_order=3),
    dict(steps=12, algorithm_type="sde-dpmsolver++", solver_type="heun", use_karras_sigmas=True),
    dict(steps=20, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=10, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min", solver_type="heun"),
    dict(steps=10, use_karras_sigmas=True),
    dict(steps=25, use_karras_sigmas=True, solver_order=3),
    dict(steps=20, use_lu_lambdas=True),
    dict(steps=20, use_exponential_sigmas=True),
    dict(steps=10, use_lu_lambdas=True, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=10, final_sigmas_type="sigma_min"),
    dict(steps=10, lower_order_final=False),
    dict(steps=20, euler_at_final=True, final_sigmas_type="sigma_min"),
    dict(steps=10, thresholding=True, sample_max_value=1.5),
    dict(steps=10, thresholding=True, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=10, prediction_type="v_prediction"),
    dict(steps=10, prediction_type="v_prediction", algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=10, prediction_type="sample"),
    dict(steps=10, timestep_spacing="leading", steps_offset=1),
    dict(steps=10, timestep_spacing="trailing"),
    dict(steps=10, rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
    dict(steps=10, rescale_betas_zero_snr=True, prediction_type="v_prediction", use_karras_sigmas=True),
    dict(steps=10, beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1),
    dict(steps=10, beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1, timestep_spacing="trailing"),
    dict(steps=12, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, use_karras_sigmas=True,
         solver_order=3),
    dict(steps=1),
    dict(steps=2, solver_order=3),
    dict(steps=10, variance_type="learned_range"),
]

SINGLESTEP_CASES = [
    dict(steps=10),
    dict(steps=9, solver_order=3),
    dict(steps=12, solver_order=3, solver_type="heun"),
    dict(steps=10, solver_order=1),
    dict(steps=10, solver_order=3, final_sigmas_type="sigma_min"),
    dict(steps=12, solver_order=3, final_sigmas_type="sigma_min", lower_order_final=False),
    dict(steps=8, final_sigmas_type="sigma_min", lower_order_final=False),
    dict(steps=10, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(steps=11, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3, solver_type="heun"),
    dict(steps=10, algorithm_type="sde-dpmsolver++"),
    dict(steps=12, algorithm_type="sde-dpmsolver++", solver_order=3),
    # diffusers' own form is unstable here (see test_diffusers_sde_third_order_singlestep_is_unstable):
    # few steps keep the float32-vs-float64 sigma difference from being amplified past 1e-4
    dict(steps=9, algorithm_type="sde-dpmsolver++", solver_order=3, solver_type="heun"),
    dict(steps=10, use_karras_sigmas=True),
    dict(steps=10, use_exponential_sigmas=True, solver_order=3),
    dict(steps=10, prediction_type="v_prediction", thresholding=True),
    dict(steps=10, beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1, solver_order=3),
    # keys of other classes that the single-step class ignores (its tables are always linspace)
    dict(steps=10, timestep_spacing="leading", steps_offset=1),
]


@needs_diffusers
@pytest.mark.parametrize("case", MULTISTEP_CASES, ids=case_id)
def test_multistep_matches_diffusers(case):
    learned = case.get("variance_type") == "learned_range"
    model, noise = toy_model(2 if learned else 1), noise_for(1)
    ref = diffusers_loop(diffusers.DPMSolverMultistepScheduler(**config_of(case)), model, noise, case["steps"], 5)
    got, sampler = ours(MULTI, case, model, noise, 5)
    assert torch.isfinite(ref).all()
    assert rel_diff(got, ref) < 1e-4


@needs_diffusers
@pytest.mark.parametrize("case", SINGLESTEP_CASES, ids=case_id)
def test_singlestep_matches_diffusers(case):
    model, noise = toy_model(), noise_for(2)
    scheduler = diffusers.DPMSolverSinglestepScheduler.from_config(config_of(case))  # ignores foreign keys
    ref = diffusers_loop(scheduler, model, noise, case["steps"], 6)
    got, sampler = ours(SINGLE, case, model, noise, 6)
    assert sampler.name == "dpm-solver-singlestep"
    assert torch.isfinite(ref).all()
    assert rel_diff(got, ref) < 1e-4


@needs_diffusers
@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++", "sde-dpmsolver++"])
def test_config_picks_the_method_of_its_algorithm(algorithm):
    sampler = samplers.from_diffusers_config({"_class_name": MULTI, "algorithm_type": algorithm,
                                             "final_sigmas_type": "sigma_min"}, 10)
    assert sampler.name == {"dpmsolver": "dpm-solver", "dpmsolver++": "dpm-solver++",
                            "sde-dpmsolver++": "sde-dpm-solver++"}[algorithm]
    assert sampler.opt("algorithm_type") == algorithm


@needs_diffusers
def test_aliases_match_diffusers_with_their_defaults():
    """dpm-solver++ is DPMSolverMultistepScheduler(); sde-dpm-solver++ its sde-dpmsolver++ form."""
    model, noise = toy_model(), noise_for(3)
    for name, cfg in [("dpm-solver++", {}), ("sde-dpm-solver++", {"algorithm_type": "sde-dpmsolver++"})]:
        ref = diffusers_loop(diffusers.DPMSolverMultistepScheduler(**cfg), model, noise, 12, 8)
        got = samplers.create(name, 12).sample(model, noise, torch.Generator().manual_seed(8))
        assert rel_diff(got, ref) < 1e-4


# --------------------------------------------------------------------------------------------
# diffusers breakages.
@needs_diffusers
@pytest.mark.parametrize("config,steps", [
    (dict(beta_schedule="squaredcos_cap_v2", use_karras_sigmas=True), 20),
    (dict(beta_schedule="squaredcos_cap_v2", use_exponential_sigmas=True, solver_order=3), 12),
    (dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", use_karras_sigmas=True), 50),
], ids=["cosine-karras", "cosine-exponential", "zero-snr-karras-50"])
def test_repeated_karras_timesteps_do_not_break(config, steps):
    """diffusers #12771 / #5687: repeated first timesteps make diffusers skip a step and raise
    IndexError; with the step index fixed by hand (set_begin_index) it gives the intended image,
    which is ours."""
    model, noise = toy_model(), noise_for(4)
    with pytest.raises(IndexError):
        diffusers_loop(diffusers.DPMSolverMultistepScheduler(**config), model, noise, steps, 0)
    fixed = diffusers.DPMSolverMultistepScheduler(**config)
    ref = diffusers_loop(fixed, model, noise, steps, 0, begin_index=0)
    got, sampler = ours(MULTI, dict(config, steps=steps), model, noise, 0)
    assert len(np.unique(sampler.timesteps)) < len(sampler.timesteps)  # the model does see repeats
    assert torch.isfinite(got).all()
    if config.get("beta_schedule") != "squaredcos_cap_v2":
        assert rel_diff(got, ref) < 1e-4
        return
    # On squaredcos_cap_v2 diffusers' float32 tables floor t(sigma_max) = 998.9999 to 998 (exactly
    # 999) and put sigma_max 2.6e-4 off (float32 1 - beta near 0.999): the images differ by ~1e-3.
    # Given diffusers' own timesteps and sigmas, our solver reproduces its image.
    assert rel_diff(got, ref) < 3e-3
    sampler = sampler.with_grid(samplers.Grid(t=np.append(fixed.timesteps.numpy(), 0.0).astype(np.float64),
                                              sigma=fixed.sigmas.numpy().astype(np.float64)))
    assert rel_diff(sampler.sample(model, noise, torch.Generator().manual_seed(0)), ref) < 1e-4


@needs_diffusers
@pytest.mark.parametrize("grid", [dict(use_lu_lambdas=True, solver_type="heun"),
                                  dict(use_karras_sigmas=True, solver_type="heun"),
                                  dict(use_exponential_sigmas=True, solver_order=3)], ids=case_id)
def test_empty_last_step_is_the_identity_not_nan(grid):
    """Ending at sigma_min twice makes diffusers' heun and third-order weights 0/0 = NaN on the
    empty last step."""
    config = dict(grid, final_sigmas_type="sigma_min")
    model, noise = toy_model(), noise_for(5)
    full = diffusers_loop(diffusers.DPMSolverMultistepScheduler(**config), model, noise, 20, 0)
    assert not torch.isfinite(full).all()
    before_last = diffusers_loop(diffusers.DPMSolverMultistepScheduler(**config), model, noise, 20, 0,
                                 stop_before_last=True)
    got, _ = ours(MULTI, dict(config, steps=20), model, noise, 0)
    assert rel_diff(got, before_last) < 1e-4


@needs_diffusers
def test_singlestep_noise_form_thresholding_works():
    """diffusers' single-step dpmsolver + thresholding indexes alpha_t with None and raises; with
    that index fixed (the current timestep) it gives the image we give."""
    config = dict(algorithm_type="dpmsolver", thresholding=True, final_sigmas_type="sigma_min", solver_order=3)
    model, noise = toy_model(), noise_for(6)
    with pytest.raises(RuntimeError):
        diffusers_loop(diffusers.DPMSolverSinglestepScheduler(**config), model, noise, 12, 0)

    class Fixed(diffusers.DPMSolverSinglestepScheduler):
        def convert_model_output(self, model_output, *args, sample=None, **kwargs):
            return super().convert_model_output(model_output, self.timesteps[self.step_index], sample=sample)

    ref = diffusers_loop(Fixed(**config), model, noise, 12, 0)
    got, _ = ours(SINGLE, dict(config, steps=12), model, noise, 0)
    assert rel_diff(got, ref) < 1e-4


@needs_diffusers
def test_multistep_noise_form_sde_third_order_runs():
    """diffusers raises UnboundLocalError for sde-dpmsolver with solver_order=3; here it runs and
    its first two steps (orders 1, 2) are diffusers'."""
    config = dict(algorithm_type="sde-dpmsolver", solver_order=3, final_sigmas_type="sigma_min")
    model, noise = toy_model(), noise_for(7)
    with pytest.raises(UnboundLocalError):
        diffusers_loop(diffusers.DPMSolverMultistepScheduler(**config), model, noise, 10, 0)
    ref2 = diffusers_loop(diffusers.DPMSolverMultistepScheduler(**dict(config, solver_order=2)), model, noise, 2, 0)
    got, _ = ours(MULTI, dict(config, steps=10), model, noise, 0)
    two = samplers.from_diffusers_config(dict(config, _class_name=MULTI), 2)
    assert rel_diff(two.sample(model, noise, torch.Generator().manual_seed(0)), ref2) < 1e-4
    assert torch.isfinite(got).all()


def test_noise_form_with_final_zero_returns_the_predicted_x0():
    """diffusers refuses dpmsolver with final_sigmas_type='zero'; the exact limit of the noise-form
    step to sigma = 0 is the model's x0 prediction, as in the data form."""
    model = toy_model()
    steps = list(samplers.create("dpm-solver", 10, algorithm_type="dpmsolver").run(model, noise_for(8)))
    assert steps[-1].done and rel_diff(steps[-1].x, steps[-1].x0) < 1e-6


def test_diffusers_sde_third_order_singlestep_is_unstable():
    """diffusers' sde-dpmsolver++ third-order weight adds -alpha_t * D2 (a sign slip): its single-step
    'heun' update amplifies a 1e-9 change of the starting noise to 1e-3 and more at 30 steps.
    k-diffusion's ('reference') and the Taylor weights are stable."""
    model = toy_model()
    noise = noise_for(9, dtype=torch.float64)

    def sensitivity(rule):
        s = samplers.create("dpm-solver-singlestep", 30, algorithm_type="sde-dpmsolver++", order=3,
                            solver_type="heun", third_order=rule)
        a = s.sample(model, noise, torch.Generator().manual_seed(1))
        b = s.sample(model, noise * (1 + 1e-9), torch.Generator().manual_seed(1))
        return rel_diff(a, b)

    assert sensitivity("diffusers") > 1e-5
    assert sensitivity("reference") < 1e-7
    assert sensitivity("taylor") < 1e-7


def test_model_timesteps_rounded_floored_or_fractional():
    """diffusers gives the model round(t) on karras grids (the solver keeps the exact sigma),
    int(t) on exponential ones; round_timesteps=False gives the consistent fractional t."""
    seen = []

    def spy(x, t):
        seen.append(float(t[0]))
        return toy_model()(x, t)

    for options, check in [
        (dict(spacing="karras"), lambda ts: all(t == round(t) for t in ts)),
        (dict(spacing="logsnr", timestep_rounding="floor"), lambda ts: all(t == math.floor(t) for t in ts)),
        (dict(spacing="karras", round_timesteps=False), lambda ts: sum(t != round(t) for t in ts) >= 8),
    ]:
        seen.clear()
        sampler = samplers.create("dpm-solver++", 10, **options)
        sampler.sample(spy, noise_for(10))
        assert check(seen), (options, seen)
        exact = samplers.create("dpm-solver++", 10, **dict(options, round_timesteps=False)).grid.sigma
        assert np.array_equal(sampler.grid.sigma, exact)


# --------------------------------------------------------------------------------------------
# k-diffusion's DPM++ 2M SDE / 3M SDE (VE form, written from the published algorithm).
def kdiffusion_multistep_sde(model, x_vp, sigmas, schedule, generator, third):
    """k-diffusion's sample_dpmpp_2m_sde (midpoint) / sample_dpmpp_3m_sde with eta = 1 and
    per-step randn noise; the network sees x / sqrt(1 + sigma^2) at the fractional timestep."""
    def denoised(x, s):
        t = float(schedule.t_of_sigma(s))
        eps = model(x / math.sqrt(1 + s * s), torch.full((x.shape[0],), t, dtype=x.dtype))
        return x - s * eps

    x = x_vp * math.sqrt(1 + sigmas[0] ** 2)
    d1 = d2 = h1 = h2 = None
    for i in range(len(sigmas) - 1):
        d = denoised(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = d
            continue
        h = math.log(sigmas[i] / sigmas[i + 1])
        x = math.exp(-2 * h) * x + (-math.expm1(-2 * h)) * d
        phi2 = math.expm1(-2 * h) / (2 * h) + 1
        if third and h2 is not None:
            r0, r1 = h1 / h, h2 / h
            e0, e1 = (d - d1) / r0, (d1 - d2) / r1
            x = x + phi2 * (e0 + (e0 - e1) * r0 / (r0 + r1)) - (phi2 / (2 * h) - 0.5) * (e0 - e1) / (r0 + r1)
        elif third and h1 is not None:
            x = x + phi2 * (d - d1) / (h1 / h)
        elif h1 is not None:
            x = x + 0.5 * (-math.expm1(-2 * h)) * (d - d1) / (h1 / h)
        x = x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * sigmas[i + 1] * math.sqrt(
            -math.expm1(-2 * h))
        d1, d2, h1, h2 = d, d1, h, h1
    return x


@pytest.mark.parametrize("name", ["dpm++2m-sde", "dpm++3m-sde"])
def test_kdiffusion_names_follow_kdiffusion(name):
    model, noise = toy_model(), noise_for(11, dtype=torch.float64)
    sampler = samplers.create(name, 15)
    got = sampler.sample(model, noise, torch.Generator().manual_seed(3))
    ref = kdiffusion_multistep_sde(model, noise, list(sampler.grid.sigma), sampler.schedule,
                                   torch.Generator().manual_seed(3), third=name == "dpm++3m-sde")
    assert rel_diff(got, ref) < 1e-10


# --------------------------------------------------------------------------------------------
# Exactness on Gaussian data (float64).
@pytest.fixture(scope="module")
def gaussian():
    data = GaussianData(torch.linspace(-0.5, 0.5, 16, dtype=torch.float64),
                        torch.logspace(-2, 0, 16, dtype=torch.float64))
    x = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return data, x, data.flow(x, 999, 0)   # the exact probability-flow map to t = 0 (sigma_min)


def measured_order(gaussian, name, counts, **options):
    """Slope of log error vs log number of steps on grids uniform in lambda ending at sigma_min."""
    data, x, exact = gaussian
    errors = [(samplers.create(name, n, **options).sample(data, x) - exact).abs().max().item() for n in counts]
    return fit_order(counts, errors)["order"]


LAMBDA_GRID = dict(spacing="logsnr", round_timesteps=False, final_sigmas_type="sigma_min")
MULTISTEP_COUNTS = [20, 28, 40, 56, 80]


@pytest.mark.parametrize("order,algorithm,solver_type", [
    (1, "dpmsolver", "midpoint"), (1, "dpmsolver++", "midpoint"),
    (2, "dpmsolver", "midpoint"), (2, "dpmsolver", "heun"), (2, "dpmsolver++", "midpoint"), (2, "dpmsolver++", "heun"),
    (3, "dpmsolver", "midpoint"), (3, "dpmsolver++", "midpoint")])
def test_multistep_orders(gaussian, order, algorithm, solver_type):
    slope = measured_order(gaussian, "dpm-solver", MULTISTEP_COUNTS, algorithm_type=algorithm,
                           order=order, solver_type=solver_type, lower_order_final=False,
                           third_order="taylor", **LAMBDA_GRID)
    assert slope > order - 0.3


@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
def test_reference_third_order_multistep_is_second_order(gaussian, algorithm):
    """Lu et al.'s code, diffusers and k-diffusion weigh the multistep second difference with half
    its Taylor weight: their 3M converges with order 2."""
    slope = measured_order(gaussian, "dpm-solver", MULTISTEP_COUNTS, algorithm_type=algorithm, order=3,
                           lower_order_final=False, third_order="reference", **LAMBDA_GRID)
    assert 1.7 < slope < 2.5


@pytest.mark.parametrize("order,solver_type", [(1, "midpoint"), (2, "midpoint"), (2, "heun"), (3, "midpoint"),
                                               (3, "heun")])
@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
def test_singlestep_orders(gaussian, order, solver_type, algorithm):
    # steps = k * order + 1: whole groups plus the empty step at sigma_min
    counts = [order * (n // order) + 1 for n in MULTISTEP_COUNTS]
    slope = measured_order(gaussian, "dpm-solver-singlestep", counts, algorithm_type=algorithm,
                           order=order, solver_type=solver_type, **LAMBDA_GRID)
    assert slope > order - 0.3


@pytest.mark.parametrize("order,counts", [(1, [10, 14, 20, 28, 40]), (2, [10, 14, 20, 28, 40]),
                                          (3, [11, 17, 23, 32, 44])])
@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
def test_fast_orders(gaussian, order, counts, algorithm):
    # third order: evaluations = 2 mod 3, i.e. third-order steps and one second-order step
    slope = measured_order(gaussian, "dpm-solver-fast", counts, order=order, algorithm_type=algorithm)
    assert slope > order - 0.3


@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
@pytest.mark.parametrize("grid", [dict(spacing="logsnr", round_timesteps=False),
                                  dict(spacing="custom", timesteps=[999, 700, 420, 230, 90, 31, 5])], ids=case_id)
def test_first_order_is_ddim(gaussian, algorithm, grid):
    data, x, _ = gaussian
    dpm = samplers.create("dpm-solver", 7, algorithm_type=algorithm, order=1, **grid).sample(data, x)
    ddim = samplers.create("ddim", 7, eta=0.0, prev_timestep="grid", set_alpha_to_one=True, **grid).sample(data, x)
    assert (dpm - ddim).abs().max().item() < 1e-13


# --------------------------------------------------------------------------------------------
# DPM-Solver-fast and DPM-Solver-adaptive.
@pytest.mark.parametrize("order", [1, 2, 3])
def test_fast_spends_exactly_its_budget(order):
    for steps in range(1, 13):
        calls = []
        model = lambda x, t: calls.append(1) or toy_model()(x, t)  # noqa: E731
        sampler = samplers.create("dpm-solver-fast", steps, order=order)
        records = list(sampler.run(model, noise_for(12)))
        assert len(calls) == records[-1].nfe == sampler.nfe == steps
        assert sum(samplers.dpm_solver.fast_orders(steps, order)) == steps


def test_adaptive_beats_uniform_steps_where_difficulty_is_local():
    """Ring of five tight modes: which mode a path joins is decided in a narrow lambda range.
    DPM-Solver++-23 with rtol 0.01 reaches its error with fewer evaluations than the same solver
    on uniform lambda steps (DPM-Solver-fast) needs for that error."""
    data = GaussianMixture.two_d()
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # third order, 400 steps: within 2e-5 of a 1500-step solve, 50x below the errors compared here
    reference = samplers.create("dpm-solver++", 400, order=3, third_order="taylor",
                                **LAMBDA_GRID).sample(data, x)
    adaptive = samplers.create("dpm-solver-adaptive", 1000, algorithm_type="dpmsolver++", rtol=0.01, atol=0.001)
    records = list(adaptive.run(data, x))
    adaptive_error = (records[-1].x - reference).abs().max().item()
    used = records[-1].nfe
    assert used < adaptive.steps and adaptive_error < 0.01
    fixed = samplers.create("dpm-solver-fast", used, algorithm_type="dpmsolver++").sample(data, x)
    assert (fixed - reference).abs().max().item() > 1.5 * adaptive_error


def test_adaptive_stays_within_its_budget_and_reaches_the_end(gaussian):
    data, x, exact = gaussian
    for order, budget in [(2, 2), (2, 9), (3, 3), (3, 10)]:
        calls = []
        model = lambda x_, t: calls.append(1) or data(x_, t)  # noqa: E731
        out = samplers.create("dpm-solver-adaptive", budget, order=order, rtol=1e-4, atol=1e-5,
                              algorithm_type="dpmsolver++").sample(model, x)
        assert len(calls) <= budget
        # a run cut short ends with one long step to sigma_min: much closer to the exact end point than
        # its start, though far from the tolerance
        assert (out - exact).abs().max() < 0.4 * (x - exact).abs().max()


# --------------------------------------------------------------------------------------------
# Bad input.
@pytest.mark.parametrize("name,options,named", [
    ("dpm-solver", dict(order=4), r"order=4 is not allowed"),
    ("dpm-solver-singlestep", dict(order=4), r"order=4 is not allowed"),
    ("dpm-solver-adaptive", dict(order=1), r"order=1 is not allowed"),
    ("dpm++2m-sde", dict(order=3), r"order=3 is not allowed"),
    ("dpm-solver", dict(algorithm_type="deis"), "algorithm_type"),
    ("dpm-solver-singlestep", dict(algorithm_type="sde-dpmsolver"), "algorithm_type"),
    ("dpm-solver-fast", dict(algorithm_type="sde-dpmsolver++"), "algorithm_type"),
    ("dpm-solver", dict(solver_type="bh2"), "solver_type"),
    ("dpm-solver", dict(algorithm_type="sde-dpmsolver"), "final_sigmas_type"),
    ("dpm-solver", dict(third_order="exact"), "third_order"),
    ("dpm-solver", dict(spacing="linspace", lambda_min=50.0), "lambda_min"),
    ("dpm-solver-adaptive", dict(rtol=0.0), "rtol"),
    ("dpm-solver-fast", dict(spacing="karras"), "spacing"),
])
def test_bad_options_name_the_option(name, options, named):
    with pytest.raises(ValueError, match=named):
        samplers.create(name, 10, **options)


def test_bad_budget_and_configs_name_the_key():
    with pytest.raises(ValueError, match="steps"):
        samplers.create("dpm-solver-adaptive", 2, order=3)
    for key in ("use_beta_sigmas", "use_flow_sigmas"):
        with pytest.raises(ValueError, match=key):
            samplers.from_diffusers_config({"_class_name": MULTI, key: True}, 10)
    with pytest.raises(ValueError, match=r"'solver_order': order=4"):
        samplers.from_diffusers_config({"_class_name": MULTI, "solver_order": 4}, 10)
    with pytest.raises(ValueError, match="prediction_type"):
        samplers.from_diffusers_config({"_class_name": SINGLE, "prediction_type": "flow_prediction"}, 10)
