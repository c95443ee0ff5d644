"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models").

x' = alpha' x0 + sqrt(sigma'^2 - std^2) eps + std z, with std = eta * sqrt of the DDPM
posterior variance.  eta = 0 is the deterministic probability-flow solver of order 1;
eta = 1 draws like DDPM.
"""
from __future__ import annotations

import math

import numpy as np

from .core import GRID_OPTIONS, REGISTRY, X0_OPTIONS, Diffusers, Eval, Method, Option, add_options, alias, register
from .diffusers_config import COMMON
from .schedule import vp_coefficients

add_options(
    Option("set_alpha_to_one", True, "end at alpha = 1 (clean); else at the first train step", bool),
    Option("prev_timestep", "diffusers", "where a step lands: 'diffusers' = t - T//N as diffusers does for "
           "its timestep tables (may fall between grid points); 'grid' = the next grid point", str,
           ("diffusers", "grid")),
    Option("use_clipped_model_output", False, "recompute eps from the clipped x0", bool),
)

TABLE_SPACINGS = ("leading", "linspace", "trailing")


def transfer(x, eps, k_from: float, k_to: float):
    """The DDIM map from noise level k_from to k_to for a given eps (PNDM's "transfer")."""
    a, s = vp_coefficients(k_from)
    a2, s2 = vp_coefficients(k_to)
    return (a2 / a) * x + (s2 - a2 * s / a) * eps


def step_targets(sampler) -> tuple[np.ndarray, np.ndarray]:
    """Time and k-sigma each step lands on, under the sampler's ``prev_timestep`` rule."""
    g = sampler.grid
    t_next, k_next = g.t[1:].copy(), g.sigma[1:].copy()
    if (sampler.opt("prev_timestep") == "diffusers" and sampler.opt("spacing") in TABLE_SPACINGS
            and sampler.opt("timesteps") is None):
        prev = g.t[:-1] - sampler.schedule.num_train_timesteps // sampler.steps
        inside = prev >= 0
        t_next = np.where(inside, prev, g.t[-1])
        k_next = np.where(inside, sampler.schedule.sigma_at(np.maximum(prev, 0)), g.sigma[-1])
    return t_next, k_next


def ddim_end(sampler) -> str:
    return "zero" if sampler.opt("set_alpha_to_one") else "sigma_min"


def ddim_program(sampler, x, rng):
    eta, pp = sampler.opt("eta"), sampler.options.get("cfg_pp", False)
    _, k_next = step_targets(sampler)
    for t, k, k2 in zip(sampler.grid.t[:-1], sampler.grid.sigma[:-1], k_next):
        a, s = vp_coefficients(k)
        a2, s2 = vp_coefficients(k2)
        var = (s2 * s2) / (s * s) * (1 - (a * a) / (a2 * a2))   # DDPM posterior variance
        std = eta * math.sqrt(max(var, 0.0))
        pred = yield Eval(x, t, k, uncond=pp)
        x0 = pred.x0   # clipped / thresholded where the options say (the driver does it)
        eps = pred.eps if sampler.opt("use_clipped_model_output") else pred.model_eps
        if pp:   # CFG++: the guided x0 re-noised along the unconditional eps
            eps = pred.uncond_eps
        x = a2 * x0 + math.sqrt(max(s2 * s2 - std * std, 0.0)) * eps
        if eta > 0:
            x = x + std * rng.randn_like(x, k, k2)
    return x


register(Method(
    name="ddim", title="DDIM", paper="Song, Meng, Ermon 2021 (arXiv:2010.02502)", order=1, stochastic=False,
    order_note="deterministic by default (eta = 0); eta > 0 adds DDPM-like noise",
    options=GRID_OPTIONS + X0_OPTIONS + ("eta", "noise", "set_alpha_to_one", "prev_timestep", "use_clipped_model_output"),
    program=ddim_program, grid=lambda s: s.make_grid(final=ddim_end(s)),
    diffusers=Diffusers("DDIMScheduler", dict(COMMON, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True,
                                              thresholding=False, dynamic_thresholding_ratio=0.995,
                                              sample_max_value=1.0))))
alias("ddim", "ddim-cfg++", "DDIM CFG++", paper="Chung, Kim, Park, Nam, Ye 2024, CFG++ (arXiv:2406.08070)",
      options=REGISTRY["ddim"].options + ("cfg_pp",), defaults={"cfg_pp": True}, diffusers=None)
