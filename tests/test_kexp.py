"""RES multistep, DPM++ SDE, DPM++ 2M SDE Heun, SEEDS, exponential Heun: k-diffusion parity given the
same noise, the papers' claims on exact Gaussian data, and what their names promise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samplers
from models.analytic import GaussianData
from tests.kdiffusion_oracle import Draws, denoiser, load_sampling
from samplers.evaluation import fit_order
from samplers.grids import Grid, logsnr_sigmas
from tests.test_convergence import exact_error, gaussian_problem, measured_order, options_for

SHAPE = (2, 4, 4)


def parity_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 * torch.rand(SHAPE, generator=g, dtype=torch.float64) - 0.25
    var = 0.05 + 0.95 * torch.rand(SHAPE, generator=g, dtype=torch.float64)
    return GaussianData(mu, var), torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)


def run_both(name, kd_sampler, steps, start_scale, **kd_kwargs):
    """(ours, k-diffusion's, draws each took) on our grid's sigmas, the same noise sequence."""
    kd = load_sampling()
    model, noise = parity_problem()
    sampler = samplers.create(name, steps, spacing="karras")
    ours_draws, kd_draws = Draws(noise.shape), Draws(noise.shape)
    ours = samplers.core.drive(sampler, sampler.method.program(sampler, noise.clone(), ours_draws), model)
    ours = [s for s in ours][-1].x
    sigmas = torch.tensor(sampler.grid.sigma, dtype=torch.float64)
    x = noise * start_scale(float(sigmas[0]))
    theirs = getattr(kd, kd_sampler)(denoiser(model, sampler.schedule), x, sigmas, disable=True,
                                     noise_sampler=kd_draws, **kd_kwargs)
    return ours, theirs, ours_draws.used, kd_draws.used


@pytest.mark.parametrize("steps", [3, 10])
def test_dpmpp_sde_matches_k_diffusion_given_the_same_noise(steps):
    ours, theirs, n_ours, n_kd = run_both("dpm++sde", "sample_dpmpp_sde", steps, lambda k: k)
    assert n_ours == n_kd == 2 * (steps - 1)
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


@pytest.mark.parametrize("steps", [3, 10])
def test_dpmpp_2m_sde_heun_matches_k_diffusion_given_the_same_noise(steps):
    # our multistep form runs in VP scale from unit noise: k-diffusion starts from sqrt(1 + k^2) z
    ours, theirs, n_ours, n_kd = run_both("dpm++2m-sde-heun", "sample_dpmpp_2m_sde", steps,
                                          lambda k: (1 + k * k) ** 0.5, solver_type="heun")
    assert n_kd == steps - 1 and n_ours >= n_kd   # ours also draws (with weight 0) on the last step
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


def test_res_multistep_is_dpm_solver_pp_2m_with_its_taylor_weight():
    """RES's b1 = phi_1 - phi_2 / c2, b2 = phi_2 / c2 are the second-order Taylor weights: at eta = 0 RES
    is DPM-Solver++(2M) heun (k-diffusion's dpmpp_2m_sde heun without noise), not the midpoint 2M."""
    model, noise = gaussian_problem()
    # init_noise 'vp': the multistep DPM form starts from the VP sample sqrt(1 + k^2) z, as here
    res = samplers.create("res-multistep", 12, spacing="karras", init_noise="vp").sample(model, noise)
    heun = samplers.create("dpm++2m-sde-heun", 12, spacing="karras", eta=0.0).sample(model, noise)
    mid = samplers.create("dpm++2m-sde", 12, spacing="karras", eta=0.0).sample(model, noise)
    assert (res - heun).abs().max() < 1e-10
    assert (res - mid).abs().max() > 1e-4


def test_res_keeps_second_order_on_uneven_steps():
    """RES (Theorem 2): its multistep coefficients keep order 2 on uneven steps.  On a Karras grid (steps
    uneven in lambda) the slope of log error against log steps over 20-50 steps is about 2."""
    model, noise = gaussian_problem()
    slope, _ = measured_order("res-multistep", dict(spacing="karras", final_sigmas_type="sigma_min"),
                              steps=(20, 28, 40, 50), problem=(model, noise))
    assert 1.8 < slope < 2.6, slope


def test_seeds_3_is_third_order_when_stopped_early():
    """SEEDS-3's eta = 0 path (DPM-Solver++(3S)) is third order: ending at sigma = 0.5 removes the extra
    order the log-SNR protocol shows (as for DEIS-3)."""
    model, noise = gaussian_problem()
    errors = []
    steps = (4, 5, 6, 8, 11)   # larger counts reach the ~2e-5 floor of the model-time interpolation
    for n in steps:
        s = samplers.create("seeds-3", n, **options_for("seeds-3", {}))
        sigma = logsnr_sigmas(n + 1, 0.5, float(s.grid.sigma[0]))
        s = s.with_grid(Grid(t=s.schedule.t_of_sigma(sigma), sigma=sigma))
        errors.append(exact_error(model, s, noise))
    slope = fit_order(steps, errors)["order"]
    assert 2.6 < slope < 3.6, (slope, errors)


def test_exponential_heun_sde_draws_once_per_step_and_seeds_2_twice():
    model, noise = gaussian_problem(batch=1)
    for name, per_step in (("exp-heun-2-x0-sde", 1), ("seeds-2", 2), ("seeds-3", 3), ("dpm++sde", 2)):
        draws = Draws(noise.shape)
        s = samplers.create(name, 5)
        list(samplers.core.drive(s, s.method.program(s, noise.clone(), draws), model))
        assert draws.used == per_step * 4, name   # the last step (to sigma 0) returns the x0 and draws nothing


def test_the_two_stage_options_change_the_result():
    model, noise = gaussian_problem(batch=1)
    base = samplers.create("seeds-2", 6, eta=0.0).sample(model, noise)
    for change in ({"r": 0.3}, {"stage_rule": "taylor"}):
        assert not torch.allclose(samplers.create("seeds-2", 6, eta=0.0, **change).sample(model, noise), base)


def test_seeds_noise_has_the_sde_variance_over_each_step():
    """The stages' noise is one Brownian path: a step's total fresh-noise std is k_t sqrt(1 - e^{-2 eta h})
    whatever the stages (checked on a model whose x0 is 0, so x_t is decay * x_s + noise)."""
    model = GaussianData(torch.zeros(1, 1, 1, dtype=torch.float64), 1e-12)
    noise = torch.zeros(20000, 1, 1, 1, dtype=torch.float64)
    for name in ("seeds-2", "seeds-3", "exp-heun-2-x0-sde"):
        s = samplers.create(name, 2, spacing="karras", final_sigmas_type="zero")
        k0, k1 = s.grid.sigma[0], s.grid.sigma[1]
        # one step from x = 0 at k0 to k1 (the second step lands on x0 = 0): read x after the first step
        steps = list(s.run(model, noise, torch.Generator().manual_seed(0)))
        # a Step's x is the sample of the next evaluation: the one before the evaluation at k1
        first = steps[[st.sigma for st in steps].index(k1) - 1].x   # VP scale
        h = np.log(k0 / k1)
        expected = k1 * np.sqrt(-np.expm1(-2 * h)) / np.sqrt(1 + k1 * k1)
        assert abs(float(first.std()) / expected - 1) < 0.03, name
