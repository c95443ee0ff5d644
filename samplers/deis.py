"""DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator").

In rho = sigma / alpha (the k-diffusion sigma) the probability-flow ODE is d(x/alpha)/d rho = eps,
so a step is exact up to the integral of eps; DEIS replaces eps by the polynomial through the
last p evaluations and integrates each Lagrange basis polynomial exactly:

    x_t = alpha_t (x_s / alpha_s + sum_j C_j eps_j),   C_j = int_{s}^{t} L_j d rho.

- ``solver_type="logrho"``: the polynomial in log rho (diffusers' DEISMultistepScheduler); the
  integral has a closed form (int p(u) e^u du = e^u (p - p' + p'' - ...)).
- ``solver_type="tab"``: the paper's tAB, the polynomial in the time variable t; the weights
  int L_j(t) rho'(t) dt are integrated numerically (Gauss-Legendre on each train-step interval,
  where log rho is linear in t, so the quadrature is exact to rounding).

DEIS: compute the step coefficients once for a grid, then run a plain loop.  Order 1 is DDIM.
"""
from __future__ import annotations

import math

import numpy as np

from .core import GRID_OPTIONS, X0_OPTIONS, Diffusers, Eval, Method, register
from .diffusers_config import COMMON
from .expint import first_order_at_zero, multistep_grid
from .grids import Grid
from .schedule import vp_coefficients
from .unipc import sigma_grid_flags

GAUSS_NODES, GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(8)


def lagrange_basis(nodes) -> list[np.ndarray]:
    """Power-basis coefficients (highest first, numpy.poly1d order) of each Lagrange polynomial."""
    basis = []
    for j, nj in enumerate(nodes):
        others = [n for i, n in enumerate(nodes) if i != j]
        basis.append(np.poly(others) / np.prod([nj - n for n in others]) if others else np.array([1.0]))
    return basis


def logrho_weights(k_from: float, k_to: float, past_k: list) -> list[float]:
    """int_{rho_s}^{rho_t} L_j(log rho) d rho for nodes at log of (k_from, *past_k)."""
    u0 = math.log(k_from)
    nodes = [0.0] + [math.log(k) - u0 for k in past_k]   # shifted so the step starts at u = 0
    d = math.log(k_to) - u0
    weights = []
    for p in lagrange_basis(nodes):
        q, deriv, sign = np.zeros(1), p, 1.0       # q = p - p' + p'' - ...: (e^u q)' = e^u p
        while deriv.size:
            q = np.polyadd(q, sign * deriv)
            deriv, sign = np.polyder(deriv) if deriv.size > 1 else np.array([]), -sign
        qd, q0 = np.polyval(q, d), np.polyval(q, 0.0)
        weights.append(k_from * (math.expm1(d) * qd + (qd - q0)))   # k_from * (e^d q(d) - q(0))
    return weights


def tab_weights(schedule, k_from: float, k_to: float, past_k: list) -> list[float]:
    """int_{t_s}^{t_t} L_j(t) rho'(t) dt with the Lagrange basis in the time variable t."""
    tau = schedule.t_of_sigma(np.array([k_from, k_to] + list(past_k)))
    t_s, t_t, nodes = tau[0], tau[1], [tau[0]] + list(tau[2:])
    if t_t == t_s:
        return [0.0] * len(nodes)
    inner = np.arange(math.floor(t_t) + 1, math.ceil(t_s))
    edges = np.concatenate([[t_t], inner[(inner > t_t) & (inner < t_s)], [t_s]])
    lo, hi = edges[:-1, None], edges[1:, None]
    points = (lo + hi) / 2 + (hi - lo) / 2 * GAUSS_NODES        # [pieces, 8]
    weights = (hi - lo) / 2 * GAUSS_WEIGHTS
    log_sigmas = schedule.log_sigmas                            # zero-SNR end clamped, as in the grid
    piece = np.clip(np.floor((lo + hi) / 2), 0, len(log_sigmas) - 2).astype(int)
    slope = log_sigmas[piece + 1] - log_sigmas[piece]
    drho = np.exp(log_sigmas[piece] + (points - piece) * slope) * slope   # rho'(t): log rho linear per piece
    return [-float(np.sum(weights * drho * np.polyval(p, points))) for p in lagrange_basis(nodes)]


def deis_orders(sampler) -> list[int]:
    """diffusers' DEIS: warm up 1, 2, ...; with lower_order_final and < 15 steps the last two
    steps drop to orders 1 and 2; a step into sigma 0 is first order."""
    n, p = sampler.steps, sampler.opt("order")
    lower = sampler.opt("lower_order_final") and n < 15
    orders = []
    for i in range(n):
        order = min(p, i + 1)
        if lower and i == n - 1:
            order = 1
        elif lower and i == n - 2:
            order = min(order, 2)
        orders.append(first_order_at_zero(order, sampler.grid.sigma[i + 1]))
    return orders


def deis_plan(sampler) -> list[tuple[float, tuple]]:
    """Per step (cx, (c_0, c_1, ...)): x_next = cx * x + sum_j c_j * eps_j, eps_0 newest."""
    g, tab = sampler.grid, sampler.opt("solver_type") == "tab"
    plan = []
    for i, order in enumerate(deis_orders(sampler)):
        k, k_to = g.sigma[i], g.sigma[i + 1]
        a_s, _ = vp_coefficients(k)
        a_t, s_t = vp_coefficients(k_to)
        past = [g.sigma[i - j] for j in range(1, order)]
        if k_to == k:
            c = [0.0] * order
        elif order == 1:   # DDIM, written so that k_to = 0 needs no logarithm
            c = [s_t - a_t * k]
        else:
            raw = tab_weights(sampler.schedule, k, k_to, past) if tab else logrho_weights(k, k_to, past)
            c = [a_t * w for w in raw]
        plan.append((a_t / a_s, tuple(float(v) for v in c)))
    return plan


def deis_program(sampler, x, rng):
    g = sampler.grid
    newest_first: list = []
    for i, (cx, cs) in enumerate(sampler.plan):
        pred = yield Eval(x, g.t[i], g.sigma[i])
        # eps of the thresholded x0 where thresholding is on (as diffusers): the driver's pair
        newest_first = [pred.eps] + newest_first[:sampler.opt("order") - 1]
        out = x * cx
        for c, e in zip(cs, newest_first):
            out.add_(e, alpha=c)
        x = out
    return x


def _grid(sampler) -> Grid:
    return multistep_grid(sampler)


def _translate_deis(cfg: dict, method: str) -> dict:
    # the class has no rho / clip_sample / final_sigmas_type keys (a config written for another class
    # may): it always ends at sigma_min.  (It has no sigma_min / sigma_max keys either, but its karras
    # grid reads them from the config when present, so those pass through.)
    out = dict(sigma_grid_flags(cfg, "DEISMultistepScheduler"), rho=None, clip_sample=False,
               final_sigmas_type="sigma_min")
    if cfg.get("solver_type") in ("midpoint", "heun", "bh1", "bh2"):  # diffusers maps these to logrho
        out["solver_type"] = "logrho"
    if cfg.get("algorithm_type", "deis") not in ("deis", "dpmsolver", "dpmsolver++"):
        raise ValueError(f"scheduler config key 'algorithm_type'={cfg['algorithm_type']!r} "
                         "(DEISMultistepScheduler); allowed: deis")
    return out


register(Method(
    name="deis", title="DEIS (exponential integrator, multistep)", paper="Zhang, Chen 2023 (arXiv:2204.13902)",
    order=2, stochastic=False,
    options=GRID_OPTIONS + X0_OPTIONS + ("final_sigmas_type", "timestep_rounding", "order",
                                         "lower_order_final", "solver_type"),
    program=deis_program, grid=_grid, plan=deis_plan, family="dpm",
    # diffusers' DEIS always ends at sigma_min (on karras / exponential grids: the last sigma, repeated)
    defaults={"spacing": "linspace", "solver_type": "logrho", "order": 2, "final_sigmas_type": "sigma_min"},
    choices={"order": (1, 2, 3), "solver_type": ("logrho", "tab")},
    diffusers=Diffusers("DEISMultistepScheduler", dict(
        COMMON, timestep_spacing="linspace", solver_order=2, thresholding=False,
        dynamic_thresholding_ratio=0.995, sample_max_value=1.0, algorithm_type="deis", solver_type="logrho",
        lower_order_final=True, use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
        use_flow_sigmas=False, use_dynamic_shifting=False), _translate_deis)))
