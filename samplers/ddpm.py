"""DDPM ancestral sampling (Ho et al. 2020), with the variance choices of Nichol & Dhariwal 2021.

Each step draws from the posterior q(x_prev | x_t, x0) around the predicted x0.  On a
subsampled grid "beta" is the effective one between the two grid points.
"""
from __future__ import annotations

import math

import torch

from .core import GRID_OPTIONS, X0_OPTIONS, Diffusers, Eval, Method, Option, add_options, register
from .diffusers_config import COMMON
from .schedule import vp_coefficients

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")

add_options(Option("variance_type", "fixed_small", "posterior variance of each step", str, VARIANCE_TYPES))


def ddpm_program(sampler, x, rng):
    vtype = sampler.opt("variance_type")
    g = sampler.grid
    for t, k, k2 in zip(g.t[:-1], g.sigma[:-1], g.sigma[1:]):
        a, s = vp_coefficients(k)
        a2, s2 = vp_coefficients(k2)
        abar, abar_prev = a * a, a2 * a2
        beta = 1 - abar / abar_prev                    # effective beta between the two points
        x0_coef = a2 * beta / (s * s)
        x_coef = math.sqrt(abar / abar_prev) * (s2 * s2) / (s * s)
        small = max((s2 * s2) / (s * s) * beta, 1e-20)  # posterior variance (beta tilde)
        pred = yield Eval(x, t, k)
        x0 = pred.x0   # clipped / thresholded where the options say
        x = x0_coef * x0 + x_coef * x
        if t > 0:  # diffusers adds no noise at t = 0
            z = rng.randn_like(x, k, k2)
            if vtype in ("fixed_small", "fixed_small_log"):
                std = math.sqrt(small)
            elif vtype in ("fixed_large", "fixed_large_log"):
                # diffusers' fixed_large_log takes sqrt(log(beta)) and returns NaN; the intended
                # std is sqrt(beta), as for fixed_large.
                std = math.sqrt(beta)
            elif vtype == "learned":  # the model's extra channels are the variance itself
                variance = _need_variance(pred, vtype)
                if (variance < 0).any():
                    raise ValueError(f"variance_type='learned': the model predicted a negative variance at t={t:g}")
                std = variance.sqrt()
            else:  # learned_range: the model interpolates log-variance between small and large
                frac = (_need_variance(pred, vtype) + 1) / 2
                std = torch.exp(0.5 * (frac * math.log(beta) + (1 - frac) * math.log(small)))
            x = x + std * z
    return x


def _need_variance(pred, variance_type):
    if pred.variance is None:
        raise ValueError(f"variance_type={variance_type!r} needs a model with twice the image channels "
                         "(the second half predicts the variance)")
    return pred.variance


register(Method(
    name="ddpm", title="DDPM (ancestral)", paper="Ho, Jain, Abbeel 2020 (arXiv:2006.11239)", order=None,
    order_note="stochastic: samples the reverse SDE (weak order 1); it has no noise-free path that "
               "solves the probability-flow ODE, so no ODE order is claimed",
    stochastic=True, options=GRID_OPTIONS + X0_OPTIONS + ("variance_type", "noise"),
    program=ddpm_program, grid=lambda s: s.make_grid(final="zero"),
    diffusers=Diffusers("DDPMScheduler", dict(COMMON, clip_sample=True, clip_sample_range=1.0,
                                              variance_type="fixed_small", thresholding=False,
                                              dynamic_thresholding_ratio=0.995, sample_max_value=1.0))))
