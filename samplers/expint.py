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
