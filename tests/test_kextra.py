"""Heun++, gradient estimation, iPNDM-v, LCM, DDPM in k form, CFG++ forms, and the distribution every
new stochastic sampler draws from on Gaussian data."""
from __future__ import annotations

import math

import pytest
import torch

import samplers
from models.analytic import GaussianData
from tests.test_convergence import exact_error, gaussian_problem, measured_order

MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
COV = torch.tensor([[0.4, 0.15], [0.15, 0.2]], dtype=torch.float64)
STOCHASTIC = ("dpm++sde", "seeds-2", "seeds-3", "exp-heun-2-x0-sde", "res-multistep-a", "dpm++2m-sde-heun", "ddpm-k",
              "euler-a-cfg++", "dpm++2s-a-cfg++", "res-multistep-a-cfg++", "er-sde")


def at_nfe(name, nfe, **options):
    best = None
    for n in range(1, nfe + 1):
        s = samplers.create(name, n, **options)
        if s.nfe > nfe:
            break
        best = s
    return best


def moment_error(name, nfe, seed=1) -> float:
    """max |mean - mu| + max |cov - COV| of 4,000 samples (Karras grid)."""
    model = GaussianData(MU, COV)
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = at_nfe(name, nfe, spacing="karras").sample(model, noise, torch.Generator().manual_seed(seed))
    return float((x.mean(0) - MU).abs().max() + (torch.cov(x.T) - COV).abs().max())


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samples_have_the_data_moments_tightening_with_nfe(name):
    """Each SDE / ancestral sampler's claim: its samples follow the data distribution as the steps shrink.
    Tolerance (2-d Gaussian, entries of COV 0.15-0.4, 4,000 samples: sampling noise ~0.02): at NFE 50 the
    error is below 0.15 and below 0.6 x its NFE-10 error."""
    coarse, fine = moment_error(name, 10), moment_error(name, 50)
    assert fine < 0.15 and fine < 0.6 * coarse, (coarse, fine)


@pytest.mark.parametrize("name", STOCHASTIC + ("lcm",))
def test_the_same_seed_gives_the_same_image(name):
    model, noise = gaussian_problem(batch=2)
    s = samplers.create(name, 5)
    a, b, c = (s.sample(model, noise, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_res_multistep_ancestral_is_the_2m_sde_heun_at_eta_1():
    """In k form the ancestral step to sigma_down = k'^2 / k with noise sigma_up is the SDE step with
    eta = 1 (same decay, x0 weight and noise std), and RES's c2 measured to sigma_down doubles both the
    step and the previous offset: res-multistep-a and DPM++ 2M SDE Heun are one sampler."""
    model, noise = gaussian_problem(batch=2)
    a = samplers.create("res-multistep-a", 9, spacing="karras", init_noise="vp")
    b = samplers.create("dpm++2m-sde-heun", 9, spacing="karras")
    xa, xb = (s.sample(model, noise, torch.Generator().manual_seed(5)) for s in (a, b))
    assert (xa - xb).abs().max() < 1e-9


def test_lcm_jumps_to_x0_and_renoises():
    model, noise = gaussian_problem(batch=2)
    s = samplers.create("lcm", 3)
    steps = list(s.run(model, noise, torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(0)
    k1 = s.grid.sigma[1]
    z = torch.randn(noise.shape, generator=g, dtype=noise.dtype)
    expected = (steps[0].x0 + k1 * z) / (1 + k1 * k1) ** 0.5    # the model sees the VP sample
    assert torch.allclose(steps[0].x, expected, atol=1e-12)
    assert torch.equal(steps[-1].x, steps[-1].x0)               # the last step returns the x0


def test_ipndm_v_keeps_its_order_on_uneven_steps_where_fixed_weights_lose_it():
    """iPNDM-v's claim: the actual steps' weights keep the multistep order on an uneven (Karras) grid;
    iPNDM's equal-step weights drop to about 1 there."""
    problem = gaussian_problem()
    opts = dict(spacing="karras", final_sigmas_type="sigma_min")
    v, _ = measured_order("ipndm-v", opts, problem=problem)
    fixed, _ = measured_order("ipndm", opts, problem=problem)
    assert v > 2.5 and fixed < v - 1, (v, fixed)


def test_ipndm_v_returns_the_x0_on_its_last_step():
    model, noise = gaussian_problem(batch=2)
    steps = list(samplers.create("ipndm-v", 6).run(model, noise))
    assert torch.equal(steps[-1].x, steps[-1].x0)


def test_gradient_estimation_beats_euler_at_equal_nfe_and_heunpp2_at_equal_steps():
    """Gradient estimation costs what Euler costs and is more accurate at few steps (its paper's claim);
    Heun++ spends up to 3 evaluations a step: better than Euler per step, not per evaluation."""
    model, noise = gaussian_problem()
    euler = exact_error(model, samplers.create("euler", 10, spacing="karras"), noise)
    assert exact_error(model, samplers.create("gradient-estimation", 10, spacing="karras"), noise) < 0.7 * euler
    assert exact_error(model, samplers.create("heunpp2", 10, spacing="karras"), noise) < euler


def test_ge_gamma_1_is_euler():
    model, noise = gaussian_problem(batch=1)
    a = samplers.create("gradient-estimation", 8, ge_gamma=1.0).sample(model, noise)
    b = samplers.create("euler", 8).sample(model, noise)
    assert (a - b).abs().max() < 1e-12


def test_ddpm_k_is_ddpm_on_the_k_diffusion_sigmas():
    """ComfyUI's ddpm: DDPM's posterior steps on the sampler's sigmas, started from sigma_max z."""
    model, noise = gaussian_problem(batch=2)
    k = samplers.create("ddpm-k", 7)
    x = k.sample(model, noise, torch.Generator().manual_seed(2))
    d = samplers.create("ddpm", 7).with_grid(k.grid)
    k0 = k.grid.sigma[0]
    y = d.sample(model, noise * (k0 / (1 + k0 * k0) ** 0.5), torch.Generator().manual_seed(2))
    assert torch.allclose(x, y, atol=1e-12)


def test_er_sde_at_eta_0_and_order_1_is_euler_and_its_integrals_are_exact():
    """f(k) = k is the ODE: the first-order ER-SDE step is Euler's; and for f(k) = k the stage integrals
    have closed forms int dk / k = log(k_s / k_t), int (k - k_s) dk / k = k_s - k_t - k_s log(k_s / k_t)."""
    from samplers.er_sde import integrals
    model, noise = gaussian_problem(batch=1)
    a = samplers.create("er-sde", 8, eta=0.0, order=1).sample(model, noise)
    assert (a - samplers.create("euler", 8).sample(model, noise)).abs().max() < 1e-6   # rounding at k = 157
    s, s_u = integrals(2.0, 0.5, 0.0)
    assert abs(s - math.log(4)) < 1e-12 and abs(s_u - (1.5 - 2.0 * math.log(4))) < 1e-12
