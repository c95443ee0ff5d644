"""Pieces shared by the exponential integrators and the other multistep solvers: the phi
functions, lambda of a noise level, sigma ranges, the multistep grid and its final-sigma end.

Kept below the families (dpm_solver, unipc, deis, ipndm, karras) so each is written once.
"""
from __future__ import annotations

import math

import numpy as np

from .grids import CONTINUOUS_SPACINGS, Grid


def lam_of(k: float) -> float:
    """lambda = log(alpha / sigma) = -log(k) of k-sigma k (inf at k = 0)."""
    return math.inf if k == 0 else (-math.inf if math.isinf(k) else -math.log(k))


def phi(j: int, z: float) -> float:
    """phi_j(z) = sum_i z^i / (i + j)!  (phi_0 = e^z); series near 0 where the closed form cancels."""
    if abs(z) < 1.0:
        term, total = 1.0 / math.factorial(j), 0.0
        for i in range(30):
            total += term
            term *= z / (i + j + 1)
        return total
    head = sum(z**i / math.factorial(i) for i in range(j))
    return (math.exp(z) - head) / z**j


def first_order_at_zero(order: int, sigma_to: float) -> int:
    """A step to sigma 0 spans an infinite lambda interval: only its first-order limit is finite."""
    return 1 if sigma_to == 0 else order


def sigma_range(sampler, ends: tuple[float, float] | None = None) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a karras / logsnr grid: the sampler's options, else ``ends``
    (default: the whole train table, its zero-SNR end clamped)."""
    if ends is None:
        table = sampler.schedule.finite_sigmas
        ends = (float(table[0]), float(table[-1]))
    lo = ends[0] if sampler.opt("sigma_min") is None else sampler.opt("sigma_min")
    hi = ends[1] if sampler.opt("sigma_max") is None else sampler.opt("sigma_max")
    if not 0 < lo < hi:
        raise ValueError(f"sigma_min={lo!r}, sigma_max={hi!r}: need 0 < sigma_min < sigma_max")
    return lo, hi


def end_at_sigma_min(schedule, sigma: np.ndarray, repeat_last: bool = False) -> np.ndarray:
    """The grid's end moved from 0 to sigma(t=0) (``final_sigmas_type='sigma_min'``), never above the
    last evaluation point; ``repeat_last`` ends at the last point itself (an empty last step, as
    diffusers' multistep classes do on karras / exponential grids)."""
    out = np.array(sigma, dtype=np.float64)
    out[-1] = out[-2] if repeat_last else min(schedule.sigma_min, out[-2])
    return out


def multistep_grid(sampler, family: str = "dpm", **overrides) -> Grid:
    """The grid of the multistep solvers (diffusers' DPM-Solver / UniPC / DEIS tables, iPNDM).

    - the zero-SNR start (k = inf) is clamped to the schedule's largest finite k, as diffusers
      clamps alphas_cumprod[-1] to 2**-24 (the update formulas divide by alpha);
    - ``final_sigmas_type="sigma_min"`` ends at sigma(t=0) on timestep tables, at the grid's own
      last sigma on karras / logsnr grids (which already end there);
    - ``round_timesteps`` on karras / logsnr grids feeds the model round(t) or, with
      ``timestep_rounding="floor"``, int(t), the solver keeping the exact sigma.
    """
    o = sampler.options
    grid = sampler.make_grid(family=family, final="zero", round_timesteps=False, **overrides)
    t, sigma = grid.t.copy(), grid.sigma.copy()
    sigma[:-1] = sampler.schedule.clamp_sigma(sigma[:-1])
    continuous = o.get("spacing") in CONTINUOUS_SPACINGS and o.get("timesteps") is None
    if continuous and o.get("round_timesteps"):
        t[:-1] = np.floor(t[:-1]) if o.get("timestep_rounding") == "floor" else np.round(t[:-1])
    if o.get("final_sigmas_type", "zero") == "sigma_min":
        sigma = end_at_sigma_min(sampler.schedule, sigma, repeat_last=continuous)
        t[-1] = float(sampler.schedule.t_of_sigma(sigma[-1]))
    return Grid(t=t, sigma=sigma)


# --------------------------------------------------------------------------------------------
# The data-prediction exponential step in k form (x = x0 + k eps), shared by the k-diffusion-style
# exponential integrators (RES, DPM++ SDE, SEEDS, SA-Solver): with lambda = -log k, h = lambda_t - lambda_s
# and noise amount eta (0: the probability-flow ODE; 1: the reverse SDE; SA-Solver's tau^2),
#   x_t = (k_t / k_s) e^{-eta h} x_s + int_0^h c e^{-c (h - u)} D(u) du + k_t sqrt(1 - e^{-2 eta h}) z,  c = 1 + eta.
def taylor_weights(k_s: float, k_t: float, terms: int, eta: float = 0.0) -> tuple:
    """W_j = int_0^h c e^{-c (h-u)} u^j / j! du = c h^{j+1} phi_{j+1}(-c h), j < terms (W_0 = 1 at k_t = 0)."""
    if k_t == 0:
        return (1.0,) + (math.inf,) * (terms - 1)
    h, c = lam_of(k_t) - lam_of(k_s), 1.0 + eta
    return tuple(c * h ** (j + 1) * phi(j + 1, -c * h) for j in range(terms))


def decay_and_noise(k_s: float, k_t: float, eta: float = 0.0) -> tuple[float, float]:
    """(factor of x_s, std of the fresh noise) of that step; (0, 0) at k_t = 0."""
    if k_t == 0:
        return 0.0, 0.0
    h = lam_of(k_t) - lam_of(k_s)
    return k_t / k_s * math.exp(-eta * h), k_t * math.sqrt(-math.expm1(-2.0 * eta * h))


def interpolation_weights(weights, offsets) -> list[float]:
    """Coefficients c_j of model values at lambda offsets u_j (u_0 = 0) with sum_j c_j m_j =
    sum_k weights[k] p^(k)(0), p the polynomial through (u_j, m_j): Taylor weights applied to the
    interpolant (Adams-Bashforth / -Moulton in lambda).  One node: weights[0]."""
    n = len(offsets)
    if n == 1:
        return [weights[0]]
    if not all(math.isfinite(w) for w in weights[:n]):
        raise RuntimeError("higher-order update towards k = 0")  # programs take first order there
    inv = np.linalg.inv(np.vander(np.asarray(offsets, dtype=np.float64), n, increasing=True))
    return [float(sum(math.factorial(k) * weights[k] * inv[k, j] for k in range(n))) for j in range(n)]


def data_step(k_s: float, k_t: float, offsets=(0.0,), eta: float = 0.0, rule: str = "taylor"):
    """(decay, coefficients of the model values at ``offsets``, noise std) of one step from k_s to k_t.
    rule 'midpoint' (two nodes): the slope weighed by W_0 h / 2 (DPM-Solver-2, SEEDS' phi_1 form)."""
    if k_t == k_s:   # an empty step (a grid that ends at its last point twice) is the identity
        return 1.0, [0.0] * len(offsets), 0.0
    weights = taylor_weights(k_s, k_t, max(len(offsets), 1), eta)
    if rule == "midpoint" and len(offsets) == 2 and k_t > 0:
        weights = (weights[0], weights[0] * (lam_of(k_t) - lam_of(k_s)) / 2)
    decay, noise = decay_and_noise(k_s, k_t, eta)
    return decay, interpolation_weights(weights, list(offsets)), noise


def combine(x, decay: float, coefs, values):
    """decay * x + sum_j coefs[j] * values[j] (a new tensor)."""
    out = x * decay
    for c, v in zip(coefs, values):
        out = out.add(v, alpha=c)
    return out
