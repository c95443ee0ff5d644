"""UniPC, DEIS and iPNDM: the same image as diffusers, and finite where diffusers gives NaN."""
import math

import numpy as np
import pytest
import torch

import samplers
from conftest import rel_diff, toy_model
from samplers.deis import logrho_weights, tab_weights
from test_convergence import exact_error, gaussian_problem

diffusers = pytest.importorskip("diffusers")


def diffusers_loop(scheduler, model, noise, steps):
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t.float().reshape(1).expand(x.shape[0]))
        x = scheduler.step(out, t, x).prev_sample
    return x


def both(class_name, case, seed=1, **ours_options):
    case = dict(case)
    steps = case.pop("steps")
    model = toy_model()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    ref = diffusers_loop(getattr(diffusers, class_name)(**case), model, noise, steps)
    sampler = samplers.from_diffusers_config(dict(case, _class_name=class_name), steps, **ours_options)
    return sampler.sample(model, noise), ref, sampler


def _id(case):
    return ",".join(f"{k}={v}" for k, v in case.items())


UNIPC_CASES = [
    dict(steps=10), dict(steps=10, solver_order=1), dict(steps=10, solver_order=3), dict(steps=1),
    dict(steps=2, solver_order=3), dict(steps=50, solver_order=3),
    dict(steps=25, solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"),
    dict(steps=10, solver_type="bh1", final_sigmas_type="sigma_min"),
    dict(steps=10, predict_x0=False, final_sigmas_type="sigma_min"),
    dict(steps=12, predict_x0=False, solver_type="bh1", solver_order=3, final_sigmas_type="sigma_min"),
    dict(steps=10, disable_corrector=[0, 1, 2]), dict(steps=10, solver_order=3, disable_corrector=[4, 7]),
    dict(steps=10, use_karras_sigmas=True),
    dict(steps=10, use_karras_sigmas=True, solver_order=3, final_sigmas_type="sigma_min"),
    dict(steps=10, use_karras_sigmas=True, sigma_min=0.05, sigma_max=50.0),
    dict(steps=10, use_exponential_sigmas=True), dict(steps=15, use_exponential_sigmas=True, solver_type="bh1",
                                                      final_sigmas_type="sigma_min"),
    dict(steps=10, thresholding=True, sample_max_value=1.5),
    dict(steps=10, prediction_type="v_prediction"), dict(steps=10, prediction_type="sample"),
    dict(steps=10, timestep_spacing="trailing"), dict(steps=10, timestep_spacing="leading", steps_offset=1),
    dict(steps=10, rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
    dict(steps=10, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(steps=8, beta_schedule="squaredcos_cap_v2", solver_order=3),
]


@pytest.mark.parametrize("case", UNIPC_CASES, ids=_id)
def test_unipc_matches_diffusers(case):
    got, ref, sampler = both("UniPCMultistepScheduler", case)
    assert sampler.nfe == case["steps"]
    assert torch.isfinite(ref).all()
    assert rel_diff(got, ref) < 1e-4


DEIS_CASES = [
    dict(steps=10), dict(steps=10, solver_order=1), dict(steps=10, solver_order=3), dict(steps=20, solver_order=3),
    dict(steps=3, solver_order=3), dict(steps=10, solver_order=3, lower_order_final=False),
    dict(steps=10, use_karras_sigmas=True, solver_order=3), dict(steps=10, use_exponential_sigmas=True),
    dict(steps=10, thresholding=True, sample_max_value=1.5), dict(steps=10, prediction_type="v_prediction"),
    dict(steps=10, timestep_spacing="trailing", prediction_type="sample"),
    dict(steps=10, beta_schedule="squaredcos_cap_v2", timestep_spacing="leading"),
    dict(steps=16, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, solver_order=3),
]


@pytest.mark.parametrize("case", DEIS_CASES, ids=_id)
def test_deis_matches_diffusers(case):
    got, ref, sampler = both("DEISMultistepScheduler", case)
    assert sampler.nfe == case["steps"]
    assert rel_diff(got, ref) < 1e-4


def test_unipc_use_corrector_false_is_every_corrector_disabled():
    got, ref, _ = both("UniPCMultistepScheduler", dict(steps=10, solver_order=3, disable_corrector=list(range(10))),
                       disable_corrector=None, use_corrector=False)
    assert rel_diff(got, ref) < 1e-4


def test_unipc_without_corrector_is_dpm_solver_pp_2m():
    """UniP-2 in the data form with B(h) = e^h - 1 and weight 1/2 is DPM-Solver++(2M)."""
    model, noise = gaussian_problem()
    uncorrected = samplers.create("unipc", 12, use_corrector=False).sample(model, noise)
    corrected = samplers.create("unipc", 12).sample(model, noise)
    # the same update written as data-prediction multistep: x_t = s_t/s_s x - a_t (e^-h - 1)(m0 + (m0 - m1) / (2 r))
    sampler = samplers.create("unipc", 12, use_corrector=False)
    x, prev, g = noise.clone(), None, sampler.grid
    for i in range(12):
        k, k2 = g.sigma[i], g.sigma[i + 1]
        alpha, sigma = 1 / math.sqrt(1 + k * k), k / math.sqrt(1 + k * k)
        m0 = (x - sigma * model(x, torch.tensor([g.t[i]], dtype=torch.float32))) / alpha
        a2, s2 = (1.0, 0.0) if k2 == 0 else (1 / math.sqrt(1 + k2 * k2), k2 / math.sqrt(1 + k2 * k2))
        if k2 == 0:
            x_next = m0
        else:
            h = math.log(k / k2)
            d = m0 if prev is None or i == 11 else m0 + (m0 - prev[0]) / (2 * math.log(prev[1] / k) / h)
            x_next = (s2 / sigma) * x - a2 * math.expm1(-h) * d
        prev, x = (m0, k), x_next
    assert rel_diff(uncorrected, x) < 1e-12
    assert rel_diff(uncorrected, corrected) > 1e-4   # the corrector changes the result


@pytest.mark.parametrize("options", [dict(solver_type="bh1"), dict(predict_x0=False),
                                     dict(predict_x0=False, solver_type="bh1"),
                                     dict(solver_order=3, lower_order_final=False)], ids=_id)
def test_unipc_final_sigma_zero_is_finite_and_accurate(options):
    """diffusers 0.42.1 returns NaN for these settings with the default final sigma 0."""
    model = toy_model()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    try:
        broken = diffusers_loop(diffusers.UniPCMultistepScheduler(**options), model, noise, 10)
    except RuntimeError:   # a singular solve for order 3 at h = inf
        broken = None
    ours = samplers.from_diffusers_config(dict(options, _class_name="UniPCMultistepScheduler"), 10).sample(model, noise)
    assert torch.isfinite(ours).all()
    if broken is not None and torch.isfinite(broken).all():   # (once diffusers is fixed, the results must agree)
        assert rel_diff(ours, broken) < 1e-4
    gaussian, gnoise = gaussian_problem()
    unipc = lambda steps: samplers.from_diffusers_config(dict(options, _class_name="UniPCMultistepScheduler"), steps)  # noqa: E731
    errors = {steps: exact_error(gaussian, unipc(steps), gnoise) for steps in (20, 40)}
    assert errors[40] < 0.02 and errors[40] < 0.6 * errors[20], errors
    if options.get("predict_x0", True) and options.get("lower_order_final", True):
        # the data form: as accurate as diffusers' working default (bh2)
        for steps, err in errors.items():
            err_default = exact_error(gaussian, samplers.create("unipc", steps), gnoise)
            assert err < 2 * err_default, f"steps={steps}: error {err:.3g} vs {err_default:.3g} for bh2"
    if options.get("lower_order_final", True):
        # the last step is the h -> inf limit of diffusers' own formula: ending at a tiny sigma instead agrees
        sampler = samplers.create("unipc", 20, **options)
        at_zero = sampler.sample(gaussian, gnoise)
        sampler = sampler.with_grid(samplers.Grid(t=sampler.grid.t, sigma=np.append(sampler.grid.sigma[:-1], 1e-9)))
        assert rel_diff(sampler.sample(gaussian, gnoise), at_zero) < 1e-7


@pytest.mark.parametrize("config", [
    dict(use_karras_sigmas=True, final_sigmas_type="sigma_min", solver_order=3, lower_order_final=False),
    dict(use_karras_sigmas=True, beta_schedule="squaredcos_cap_v2"),
], ids=_id)
def test_unipc_where_diffusers_fails_on_its_grid(config):
    """An empty last step (repeated sigma) at order 3 gives NaN in diffusers; repeated model timesteps
    (karras on the cosine schedule: 999, 999, 999, ...) make diffusers skip steps and fail."""
    sampler = samplers.from_diffusers_config(dict(config, _class_name="UniPCMultistepScheduler"), 10)
    assert len(set(sampler.grid.sigma[:-1])) == 10   # every step has its own noise level
    model, noise = gaussian_problem()   # (its schedule is the linear one: the error is meaningful only there)
    assert torch.isfinite(sampler.sample(model, noise)).all()
    if "beta_schedule" not in config:
        lower = samplers.from_diffusers_config(dict(config, _class_name="UniPCMultistepScheduler",
                                                    lower_order_final=True), 10)   # what diffusers can run
        assert exact_error(model, sampler, noise) < 2 * exact_error(model, lower, noise)


def test_deis_final_sigma_zero_reaches_the_clean_end():
    """diffusers' DEIS always stops at sigma_min; ours can take the last step to sigma 0 (first order)."""
    model, noise = gaussian_problem()
    for solver_type in ("logrho", "tab"):
        runs = [samplers.create("deis", n, order=3, solver_type=solver_type, final_sigmas_type="zero")
                for n in (40, 80)]
        assert runs[0].grid.sigma[-1] == 0
        err40, err80 = (exact_error(model, s, noise) for s in runs)
        assert err40 < 0.02 and err80 < 0.5 * err40


def test_deis_weights_integrate_polynomials_exactly():
    """Sum_j C_j P(node_j) = integral of P d rho for P of degree < order, in log rho (logrho) and in t (tab)."""
    schedule = samplers.NoiseSchedule.from_config({})
    k_from, k_to, past = 3.1, 2.2, [4.0, 5.3]
    u = np.log([k_from] + past)
    grid_rho = np.exp(np.linspace(np.log(k_to), np.log(k_from), 200001))
    for degree in range(3):
        p = np.poly1d(np.arange(1.0, degree + 2))
        exact = -np.trapezoid(p(np.log(grid_rho)), grid_rho)   # from rho_s down to rho_t
        assert np.isclose(np.dot(logrho_weights(k_from, k_to, past), p(u)), exact, rtol=1e-8)
    tau = schedule.t_of_sigma(np.array([k_from] + past))
    fine_t = np.linspace(float(schedule.t_of_sigma(k_to)), tau[0], 400001)
    rho = schedule.sigma_at(fine_t)
    for degree in range(3):
        p = np.poly1d(np.linspace(0.5, 1.0, degree + 1) / 100.0 ** np.arange(degree, -1, -1))
        exact = -np.trapezoid(p(fine_t), rho)
        assert np.isclose(np.dot(tab_weights(schedule, k_from, k_to, past), p(tau)), exact, rtol=1e-7)


def test_ipndm_order_one_is_ddim():
    model, noise = gaussian_problem()
    for spacing in ("trailing", "karras"):
        ipndm = samplers.create("ipndm", 12, spacing=spacing, order=1)
        ddim = samplers.create("ddim", 12, spacing=spacing, prev_timestep="grid")
        assert rel_diff(ipndm.sample(model, noise), ddim.sample(model, noise)) < 1e-12


def test_ipndm_warm_up_costs_no_extra_evaluation():
    model, noise = gaussian_problem()
    calls = []
    counted = lambda x, t: calls.append(1) or model(x, t)  # noqa: E731
    sampler = samplers.create("ipndm", 9)
    sampler.sample(counted, noise)
    assert len(calls) == sampler.nfe == 9


@pytest.mark.parametrize("method,options,message", [
    ("unipc", dict(order=4), r"order=4 is not allowed"), ("unipc", dict(solver_type="midpoint"), "solver_type"),
    ("unipc", dict(disable_corrector=["first"]), "disable_corrector"), ("deis", dict(solver_type="bh2"), "solver_type"),
    ("deis", dict(order=4), r"order=4 is not allowed"), ("ipndm", dict(order=5), r"order=5 is out of range"),
])
def test_bad_options_name_the_parameter(method, options, message):
    with pytest.raises(ValueError, match=message):
        samplers.create(method, 10, **options)


@pytest.mark.parametrize("config,message", [
    (dict(_class_name="UniPCMultistepScheduler", use_beta_sigmas=True), "use_beta_sigmas"),
    (dict(_class_name="DEISMultistepScheduler", use_flow_sigmas=True), "use_flow_sigmas"),
    (dict(_class_name="UniPCMultistepScheduler", use_karras_sigmas=True, use_exponential_sigmas=True), "only one"),
])
def test_unsupported_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        samplers.from_diffusers_config(config, 10)


@pytest.mark.parametrize("source,options,target", [
    ("DDPMScheduler", dict(clip_sample_range=0.2), "UniPCMultistepScheduler"),
    ("UniPCMultistepScheduler", dict(final_sigmas_type="zero", sigma_min=0.1, use_karras_sigmas=True),
     "DEISMultistepScheduler"),
    ("EulerDiscreteScheduler", dict(final_sigmas_type="zero", timestep_spacing="trailing"), "DEISMultistepScheduler"),
])
def test_a_config_of_another_class_reads_as_in_diffusers(source, options, target):
    """SomeScheduler.from_config(other.config) ignores the keys SomeScheduler does not have."""
    config = dict(getattr(diffusers, source)(**options).config, clip_sample=True, clip_sample_range=0.2)
    config.pop("_use_default_values", None)   # as in a saved scheduler_config.json
    model = toy_model()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = diffusers_loop(getattr(diffusers, target).from_config(config), model, noise, 8)
    got = samplers.from_diffusers_config(config, 8, method=samplers.diffusers_config.classes()[target][0])
    assert rel_diff(got.sample(model, noise), ref) < 1e-4


def test_config_values_diffusers_maps_silently():
    unipc = samplers.from_diffusers_config(dict(_class_name="UniPCMultistepScheduler", solver_type="midpoint"), 10)
    deis = samplers.from_diffusers_config(dict(_class_name="DEISMultistepScheduler", solver_type="bh2",
                                               algorithm_type="dpmsolver++"), 10)
    assert unipc.opt("solver_type") == "bh2" and deis.opt("solver_type") == "logrho"
