"""The named schedules: each against its formula (or scipy for the Beta quantiles), and every one
usable with every sampler."""
import math

import numpy as np
import pytest
import torch

import samplers
from samplers.grids import CONTINUOUS_SPACINGS
from samplers.schedules import SIGMA_SPACINGS, TIMESTEP_SPACINGS, beta_cdf, beta_ppf, linear_quadratic_fractions

SCHEDULE = samplers.NoiseSchedule.from_config({})
T = SCHEDULE.num_train_timesteps
LO, HI = SCHEDULE.sigma_min, SCHEDULE.sigma_max
NEW = SIGMA_SPACINGS + TIMESTEP_SPACINGS


def grid(spacing, n, **options):
    return samplers.build_grid(SCHEDULE, n, spacing, shape=options, rho=options.pop("rho", None))


def sigmas_at(ts):
    return SCHEDULE.sigma_at(np.asarray(ts, dtype=np.float64), "log")


@pytest.mark.parametrize("n", [1, 2, 7, 10, 30])
def test_sigma_schedules_follow_their_formulas(n):
    u = np.linspace(0, 1, n)
    expect = {
        "exponential": np.exp(np.log(HI) + u * (np.log(LO) - np.log(HI))),
        "polyexponential": np.exp(np.log(LO) + (1 - u) ** 2.5 * (np.log(HI) - np.log(LO))),
        "kl_optimal": np.tan((1 - u) * np.arctan(HI) + u * np.arctan(LO)),
        "vp": np.sqrt(np.exp(19.9 * (1 + u * (1e-3 - 1)) ** 2 / 2 + 0.1 * (1 + u * (1e-3 - 1))) - 1),
    }
    for spacing, sig in expect.items():
        g = grid(spacing, n, **({"rho": 2.5} if spacing == "polyexponential" else {}))
        assert np.allclose(g.sigma[:-1], sig, rtol=1e-12), spacing
        assert np.allclose(g.t[:-1], SCHEDULE.t_of_sigma(sig)), spacing   # model time of each sigma


def test_polyexponential_default_rho_is_one_and_karras_seven():
    assert np.allclose(grid("polyexponential", 9).sigma, grid("exponential", 9).sigma)
    assert np.allclose(grid("karras", 9).sigma, grid("karras", 9, rho=7.0).sigma)
    assert not np.allclose(grid("polyexponential", 9, rho=2.0).sigma, grid("exponential", 9).sigma)


def test_laplace_is_a_laplace_quantile_in_log_sigma():
    n, mu, b = 12, 0.3, 0.7
    g = grid("laplace", n, laplace_mu=mu, laplace_beta=b)
    u = np.linspace(0, 1, n)
    # inside the clip, log sigma is the Laplace(mu, b) quantile at 1 - u (up to the 1e-5 guard)
    inner = slice(1, -1)
    q = 1 - u[inner]
    quantile = np.where(q < 0.5, mu + b * np.log(2 * q + 1e-5), mu - b * np.log(2 - 2 * q + 1e-5))
    assert np.allclose(np.log(g.sigma[:-1][inner]), quantile, atol=1e-12)
    assert g.sigma[0] == HI and g.sigma[-2] == LO        # the ends clip to the schedule's range


def test_timestep_schedules_follow_their_definitions():
    n = 10
    assert np.array_equal(grid("simple", n).t[:-1], [T - 1 - int(i * T / n) for i in range(n)])
    assert np.array_equal(grid("simple", 3).t[:-1], [999, 666, 333])
    assert np.allclose(grid("normal", n).t[:-1], np.linspace(T - 1, 0, n))
    assert np.allclose(grid("sgm_uniform", n).t[:-1], np.linspace(T - 1, 0, n + 1)[:-1])
    assert np.array_equal(grid("ddim_uniform", n).t[:-1], np.arange(1, 1000, 100)[::-1])
    assert np.array_equal(grid("turbo", 4).t[:-1], [999, 899, 799, 699])
    for spacing in ("normal", "sgm_uniform", "simple", "turbo"):
        g = grid(spacing, 4)
        assert np.allclose(g.sigma[:-1], sigmas_at(g.t[:-1]), rtol=1e-12)
        assert g.sigma[-1] == 0 and g.t[-1] == 0


def test_ddim_uniform_counts_like_comfyui_where_it_gives_n_points():
    def listed(n):  # every (T // n)-th train step from 1 while below T, descending
        c = T // n
        return list(range(1, T, c))[::-1]
    for n in (5, 10, 20, 25, 50):
        assert len(listed(n)) == n and grid("ddim_uniform", n).t[:-1].tolist() == listed(n)
    assert grid("ddim_uniform", 7).t[:-1].tolist() == listed(7)[:7]   # 8 listed there: we keep the top 7


def test_beta_schedule_matches_scipy_quantiles():
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    for a, b in [(0.6, 0.6), (0.5, 0.7), (2.0, 3.0), (1.0, 1.0)]:
        for x in (1e-6, 0.01, 0.3, 0.5, 0.77, 0.999):
            assert math.isclose(beta_cdf(x, a, b), special.betainc(a, b, x), rel_tol=1e-10, abs_tol=1e-14)
        u = np.linspace(0.001, 0.999, 23)
        assert np.allclose(beta_ppf(u, a, b), stats.beta.ppf(u, a, b), atol=1e-12)
    for n, (a, b) in [(10, (0.6, 0.6)), (25, (0.5, 0.8)), (40, (0.6, 0.6))]:
        u = 1 - np.linspace(0, 1, n, endpoint=False)
        expect = np.rint(stats.beta.ppf(u, a, b) * (T - 1))
        g = grid("beta", n, beta_alpha=a, beta_beta=b)
        assert np.array_equal(g.t[:-1], expect) and np.allclose(g.sigma[:-1], sigmas_at(expect))


def test_beta_schedule_refuses_repeated_timesteps():
    with pytest.raises(ValueError, match=r"spacing='beta' with steps=400 repeats"):
        grid("beta", 400)


def test_linear_quadratic_is_linear_then_a_smooth_quadratic_to_one():
    for n in (2, 5, 10, 31):
        s = linear_quadratic_fractions(n)
        m, thr = n // 2, 0.025
        assert np.allclose(s[:m], np.arange(m) * thr / m)
        i = np.arange(m, n + 1, dtype=np.float64)
        full = np.append(s, 1.0)
        coef = np.polyfit(i, full[m:], 2) if n - m >= 2 else None
        if coef is not None:   # one quadratic through the tail, meeting the line in value and slope at m, 1 at N
            assert np.allclose(np.polyval(coef, i), full[m:], atol=1e-12)
            assert math.isclose(np.polyval(coef, m), thr, abs_tol=1e-12)
            assert math.isclose(np.polyval(np.polyder(coef), m), thr / m, rel_tol=1e-9)
    assert np.allclose(grid("linear_quadratic", 10).t[:-1], (1 - linear_quadratic_fractions(10)) * (T - 1))
    assert grid("linear_quadratic", 1).t[0] == T - 1


def test_turbo_takes_at_most_ten_steps():
    with pytest.raises(ValueError, match=r"steps=11 is too many for spacing='turbo'.*1 <= steps <= 10"):
        grid("turbo", 11)


@pytest.mark.parametrize("spacing", NEW)
def test_every_new_schedule_decreases_strictly_and_ends_at_zero_or_sigma_min(spacing):
    for n in (1, 2, 5, 10):
        g = grid(spacing, n)
        assert g.steps == n and np.all(np.diff(g.sigma) < 0) and g.sigma[-1] == 0
        assert np.all(np.diff(g.t[:-1]) < 0) or n == 1
    if spacing not in ("kl_optimal", "laplace", "exponential", "polyexponential"):  # these already end at sigma_min
        g = samplers.build_grid(SCHEDULE, 5, spacing, final="sigma_min")
        assert g.sigma[-1] == LO
    if spacing in CONTINUOUS_SPACINGS:
        g = samplers.build_grid(SCHEDULE, 5, spacing, round_timesteps=True)
        assert np.array_equal(g.t, np.round(g.t))


@pytest.mark.parametrize("spacing", NEW)
def test_every_sampler_runs_on_every_new_schedule(spacing):
    model = lambda x, t: 0.3 * x   # noqa: E731
    for row in samplers.describe():
        if "spacing" not in row["options"]:
            continue
        sampler = samplers.create(row["name"], 4, spacing=spacing)
        x = sampler.sample(model, torch.randn(1, 2, generator=torch.Generator().manual_seed(0)),
                           torch.Generator().manual_seed(1))
        assert torch.isfinite(x).all(), row["name"]
