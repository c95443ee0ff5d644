"""The DPM-Solver family (Lu et al. 2022, "DPM-Solver" arXiv:2206.00927 and "DPM-Solver++"
arXiv:2211.01095): exponential integrators in lambda = log(alpha / sigma).

The math is written once.  A step from lambda_s to lambda_t = lambda_s + h keeps the linear
part of the diffusion ODE exact and integrates the model term against a kernel:

  data form   (x0 prediction, DPM-Solver++):  x_t = decay x_s + alpha_t  int_0^h c e^{-c(h-u)} x0(u) du
  noise form  (eps prediction, DPM-Solver):   x_t = decay x_s - sigma_t int_0^h c e^{(h-u)}  eps(u) du

(``transfer``: ODE c = 1; the SDE variants have c = 1 + eta for the data form and c = 2 for the
noise form, plus fresh noise).  Expanding the model term in a Taylor series around the step's
start gives the weights W_k = integral of kernel * u^k / k! (closed forms with the phi functions),
and a method only decides which past or intermediate evaluations estimate f, f', f''
(``update_weights``: linear or quadratic interpolation through the nodes).  Every method below
turns that into ``x_next = decay * x_start + sum_j c_j * m_j (+ std * z)`` with the scalars
precomputed in float64 before the loop.

Registered methods
- ``dpm-solver`` (multistep; diffusers' DPMSolverMultistepScheduler with all its options; default
  algorithm ``dpmsolver``, the noise form of the paper), aliases with other defaults:
  ``dpm-solver++`` (dpmsolver++), ``sde-dpm-solver++`` (sde-dpmsolver++), and the k-diffusion /
  ComfyUI names ``dpm++2m-sde`` and ``dpm++3m-sde`` (sde-dpmsolver++ of order 2 / 3, Karras grid,
  fractional model timesteps, k-diffusion's third-order weights and warm-up).
- ``dpm-solver-singlestep`` (diffusers' DPMSolverSinglestepScheduler: groups of 1-3 grid intervals
  make one single-step update whose intermediate points are the grid points inside the group).
- ``dpm-solver-fast`` (the paper's DPM-Solver-fast: singlestep orders 3,...,3 then 2/1 so that the
  evaluations are exactly ``steps``; steps uniform in lambda; intermediate points at r = 1/2 or
  1/3, 2/3 of a step, evaluated at fractional timesteps).
- ``dpm-solver-adaptive`` (the paper's DPM-Solver-12 / -23 with error control, rtol / atol).
  Its step count is not known in advance: ``steps`` is an upper bound on model evaluations (the
  reported ``nfe`` is that bound; a run usually stops earlier).  When the remaining budget
  covers only one more step, that step goes to the end and is accepted whatever its error, so
  every run terminates at the end point within ``steps`` evaluations.  All rows of a batch share
  one step size (the paper's rule: the largest error in the batch decides).  Unlike the
  reference code, a rejected step reuses the model value at its start (one evaluation fewer).
  fast and adaptive end at t = 0 (sigma_min) as in the paper, without a final denoising step.

Third-order weights (option ``third_order``).  With the second divided difference
D2 = h^2 f''/2 of the multistep method, the Taylor weight of D2 is 2 W_2 / h^2, but Lu et al.'s
reference code, diffusers and k-diffusion use W_2 / h^2: their "3M" is second-order accurate
(measured on Gaussian data in tests/test_dpm_solver.py: slope ~2 vs ~3 with ``taylor``).  The
single-step third-order update (D2 = h^2 f'') has the Taylor weight everywhere.  diffusers'
sde-dpmsolver++ third-order updates (multistep and single-step "heun") further add
-alpha_t * D2 (a sign slip inside its phi_3 analogue); k-diffusion's dpmpp_3m_sde does not.
``third_order='diffusers'`` reproduces diffusers 0.42 exactly (default for the diffusers-mirroring
methods), ``'reference'`` is Lu et al.'s code / k-diffusion (default of dpm++3m-sde), ``'taylor'``
has the exact Taylor weights (true third order).

k-diffusion's dpmpp_2m_sde / dpmpp_3m_sde versus diffusers' sde-dpmsolver++ (what users notice):
the deterministic updates agree (2M midpoint weights, same final "return the denoised" step),
but (1) k-diffusion feeds the network the fractional timestep of each Karras sigma while
diffusers rounds it (``round_timesteps``); (2) k-diffusion/ComfyUI draw the noise from a Brownian
tree, so the same seed gives a different (equally distributed) image than diffusers' per-step
randn, which is what we draw; (3) for 3M, diffusers' D2 sign slip above changes the image
visibly at few steps, diffusers warms up with a "midpoint" second-order step where k-diffusion
uses the "heun" one, and diffusers' lower_order_final drops to order 2 on the second-to-last
step when steps < 15.  ``dpm++2m-sde`` / ``dpm++3m-sde`` follow k-diffusion in all but the
Brownian-tree noise; ``eta`` (k-diffusion's noise amount; 1 = the SDE, 0 = its ODE limit) applies
to sde-dpmsolver++.

diffusers breakages we avoid (diffusers 0.42.1):
- Karras / Lu grids whose model timesteps repeat at the start (squaredcos_cap_v2 truncates
  fractional timesteps; zero-SNR Karras grids from about 50 steps) make ``index_for_timestep``
  skip a step and raise IndexError at the end (diffusers #12771, #5687).  We never look a step
  up by its timestep: the run is finite and equals diffusers with ``set_begin_index(0)``.
- Grids that end at sigma_min twice (karras / lu / exponential with final_sigmas_type
  "sigma_min") make the last step zero-length; solver_type "heun" then computes 0/0 = NaN.
  Our weights are written without dividing by h: the step is the identity.
- DPMSolverSinglestepScheduler with algorithm_type "dpmsolver" and thresholding indexes
  alpha_t with None and raises; multistep "sde-dpmsolver" with solver_order 3 raises
  UnboundLocalError.  Both work here.
- "dpmsolver" with final_sigmas_type "zero" is refused by diffusers; here the last step is the
  exact limit (the noise-form weights are written with sigma_t e^h = alpha_t sigma_s / alpha_s),
  i.e. it returns the predicted x0 as the data form does.
Not copied either: diffusers computes its tables in float32.  On squaredcos_cap_v2 (alphas_cumprod
down to 2.4e-9) that puts its sigma_max 2.6e-4 off and floors t(sigma_max) = 998.9999 to 998;
we keep float64 (images then differ by ~1e-3; given diffusers' tables they agree to 1e-6).
NoiseSchedule clamps alphas_cumprod at 2^-24 for every schedule, diffusers' DPM classes only for
zero-SNR ones (as NoiseSchedule does), so cosine grids start at diffusers' sigma_max.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .core import GRID_OPTIONS, Diffusers, Eval, Method, Option, add_options, alias, register
from .expint import lam_of, multistep_grid, phi, sigma_range
from .grids import Grid, custom_timesteps, logsnr_sigmas
from .model_wrapper import cfg_pp_start
from .schedule import vp_coefficients

ALGORITHMS = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")
THRESHOLD_OPTIONS = ("thresholding", "dynamic_thresholding_ratio", "sample_max_value")
TABLE_SPACINGS = ("leading", "linspace", "trailing")

add_options(
    Option("lambda_min", None, "clip table grids so they start where lambda = log(alpha/sigma) >= this "
           "(diffusers' lambda_min_clipped, e.g. -5.1 for cosine schedules); None = no clipping", float,
           low=-100.0, high=100.0, nullable=True),
    Option("third_order", "diffusers", "weights of the third-order updates: 'diffusers' (diffusers 0.42 as is), "
           "'reference' (Lu et al.'s code and k-diffusion; their multistep 3M is only second-order accurate), "
           "'taylor' (exact Taylor weights: third order)", str, ("diffusers", "reference", "taylor")),
    Option("rtol", 0.05, "relative tolerance of the adaptive step-size control", float, low=1e-6, high=1.0),
    Option("atol", 0.0078, "absolute tolerance of the adaptive step-size control (data in [-1, 1])", float,
           low=1e-8, high=1.0),
)


# ============================================================================================
# The exponential-integrator weights.
@dataclass(frozen=True)
class Transfer:
    """One step from noise level k_s to k_t: x_t = decay x_s + sum_k w[k] f^(k)(start) + noise z."""
    decay: float
    w: tuple            # (W0, W1, W2): Taylor weights of the model term; inf where lambda_t = inf
    noise: float        # std of the fresh Gaussian noise (SDE forms)
    h: float            # lambda_t - lambda_s
    alpha_t: float


def is_data_form(algorithm: str) -> bool:
    return algorithm in ("dpmsolver++", "sde-dpmsolver++")


def transfer(algorithm: str, k_s: float, k_t: float, eta: float = 1.0) -> Transfer:
    a_s, s_s = vp_coefficients(k_s)
    a_t, s_t = vp_coefficients(k_t)
    h = lam_of(k_t) - lam_of(k_s)
    sde = algorithm.startswith("sde")
    if is_data_form(algorithm):
        c = 1.0 + eta if sde else 1.0
        if k_t == 0:  # lambda_t = inf: the step lands on the predicted x0 itself
            return Transfer(0.0, (a_t, math.inf, math.inf), 0.0, h, a_t)
        w = tuple(a_t * c * h ** (j + 1) * phi(j + 1, -c * h) for j in range(3))
        noise = s_t * math.sqrt(-math.expm1(-2 * (c - 1) * h)) if sde else 0.0
        return Transfer(s_t / s_s * math.exp(-(c - 1) * h), w, noise, h, a_t)
    c = 2.0 if sde else 1.0
    st_eh = a_t * s_s / a_s        # sigma_t * e^h, finite even when sigma_t = 0
    if k_t == 0:
        return Transfer(a_t / a_s, (-c * st_eh, math.inf, math.inf), 0.0, h, a_t)
    w = tuple(-c * s_t * h ** (j + 1) * phi(j + 1, h) for j in range(3))
    noise = math.sqrt(max(st_eh * st_eh - s_t * s_t, 0.0)) if sde else 0.0
    return Transfer(a_t / a_s, w, noise, h, a_t)


def update_weights(tr: Transfer, offsets, rule: str = "heun", d2_scale: float = 1.0,
                   d2_slip: bool = False) -> list[float]:
    """Coefficients of the model values at ``offsets`` (lambda offsets from the expansion point,
    the first one 0) so that the step is ``decay * x + sum_j c_j m_j``.

    One node: first order.  Two nodes: f' from the linear interpolant; ``rule`` 'heun' weighs it
    with W1 (its Taylor weight), 'midpoint' with W0 h / 2 (the DPM-Solver-2 form).  Three nodes:
    f', f'' from the quadratic interpolant, f'' weighed with d2_scale * W2 (0.5 = the reference
    codes' multistep weight), minus d2_scale alpha_t h^2 with ``d2_slip`` (diffusers' SDE slip).
    """
    w0, w1, w2 = tr.w
    n = len(offsets)
    if n == 1:
        return [w0]
    if not (math.isfinite(w1) and math.isfinite(w2)):
        raise RuntimeError("higher-order update towards lambda = inf")  # programs use order 1 there
    if n == 2:
        u = offsets[1]
        g = w1 if rule == "heun" else 0.5 * w0 * tr.h
        return [w0 - g / u, g / u]
    _, u1, u2 = offsets
    # derivatives at 0 of the Lagrange basis through (0, u1, u2)
    d1 = [-(u1 + u2) / (u1 * u2), -u2 / (u1 * (u1 - u2)), -u1 / (u2 * (u2 - u1))]
    d2 = [2 / (u1 * u2), 2 / (u1 * (u1 - u2)), 2 / (u2 * (u2 - u1))]
    g2 = d2_scale * (w2 - (tr.alpha_t * tr.h * tr.h if d2_slip else 0.0))
    return [(w0 if j == 0 else 0.0) + w1 * d1[j] + g2 * d2[j] for j in range(3)]


# ============================================================================================
# Grids.
def clipped_table(schedule, spacing: str, steps: int, lambda_min: float, steps_offset: int) -> np.ndarray:
    """diffusers' DPM timestep tables with lambda_min_clipped: the table ends where lambda < lambda_min."""
    T = schedule.num_train_timesteps
    lam = -schedule.log_sigmas
    last = T - int(np.sum(lam < lambda_min))
    if last < 2:
        raise ValueError(f"lambda_min={lambda_min} clips the whole schedule (lambda ranges "
                         f"{lam.min():.3g}..{lam.max():.3g})")
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, steps + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ratio = last // (steps + 1)
        ts = (np.arange(steps + 1) * ratio)[::-1][:-1] + steps_offset
    else:  # trailing: diffusers steps by T / N from the clipped end, which may give fewer points
        ts = np.round(np.arange(last, 0, -T / steps)) - 1
    ts = ts.astype(np.float64)
    if len(np.unique(ts)) != len(ts):
        raise ValueError(f"steps={steps} is too many for spacing={spacing!r} with lambda_min={lambda_min}: "
                         f"timesteps would repeat")
    return custom_timesteps(ts, T)


def dpm_grid(sampler) -> Grid:
    """The DPM family's grid as diffusers builds it (N + 1 table, optionally clipped at lambda_min;
    karras/logsnr sigma ranges of the whole train table; final zero or sigma_min)."""
    o = sampler.options
    if o["algorithm_type"] == "sde-dpmsolver" and o["final_sigmas_type"] == "zero":
        raise ValueError("final_sigmas_type='zero' is not supported with algorithm_type='sde-dpmsolver' (its "
                         "last step would subtract twice the noise); use final_sigmas_type='sigma_min'")
    if "eta" in o and not o["algorithm_type"].startswith("sde") and o["eta"] != sampler.method.defaults["eta"]:
        raise ValueError(f"eta={o['eta']!r} has no effect with algorithm_type={o['algorithm_type']!r} (an ODE "
                         f"solver draws no noise); eta applies to algorithm_type sde-dpmsolver / sde-dpmsolver++")
    overrides = {}
    if o.get("lambda_min") is not None and o["spacing"] in TABLE_SPACINGS and o["timesteps"] is None:
        overrides["timesteps"] = list(clipped_table(sampler.schedule, o["spacing"], sampler.steps, o["lambda_min"],
                                                    o["steps_offset"]))
    return multistep_grid(sampler, **overrides)


def lambda_uniform_grid(sampler, points: int) -> Grid:
    """``points`` outer points uniform in lambda from sigma_max (t = T-1) to sigma_min (t = 0)."""
    lo, hi = sigma_range(sampler)
    sigma = logsnr_sigmas(points, lo, hi)
    return Grid(t=sampler.schedule.t_of_sigma(sigma), sigma=sigma)


# ============================================================================================
# Plans: per step, where the model is evaluated and how the update combines the values.
@dataclass(frozen=True)
class PlannedStep:
    t: float                 # model time of this step's evaluation
    k: float                 # its k-sigma
    base: int                # index of the grid sample the update starts from
    nodes: tuple             # indices of the model values the update combines
    coefs: tuple             # their coefficients
    decay: float
    noise: float
    draws: bool              # draws noise (diffusers draws for every SDE step, also when noise = 0)


def _third_order_rule(sampler, multistep: bool) -> tuple[float, bool]:
    rule = sampler.opt("third_order")
    scale = 0.5 if multistep and rule in ("diffusers", "reference") else 1.0
    slip = rule == "diffusers" and sampler.opt("algorithm_type") == "sde-dpmsolver++"
    return scale, slip


def multistep_plan(sampler) -> list[PlannedStep]:
    g, o = sampler.grid, sampler.options
    n, alg = g.steps, o["algorithm_type"]
    lam = [lam_of(k) for k in g.sigma]
    few = o["lower_order_final"] and n < 15   # diffusers' rule: lower orders at the end only below 15 steps
    scale, slip = _third_order_rule(sampler, multistep=True)
    plan = []
    for i in range(n):
        order = min(o["order"], i + 1)
        if i == n - 1 and (o["euler_at_final"] or few or g.sigma[-1] == 0):
            order = 1
        if i == n - 2 and few:
            order = min(order, 2)
        offsets = [0.0] + [lam[i - j] - lam[i] for j in range(1, order)]
        while len(offsets) > 1 and 0.0 in offsets[1:]:   # a repeated sigma carries no slope information
            offsets.pop()
        tr = transfer(alg, g.sigma[i], g.sigma[i + 1], o.get("eta", 1.0))
        coefs = update_weights(tr, offsets, o["solver_type"], scale, slip)
        plan.append(PlannedStep(float(g.t[i]), float(g.sigma[i]), i, tuple(range(i, i - len(offsets), -1)),
                                tuple(coefs), tr.decay, tr.noise, alg.startswith("sde")))
    return plan


def singlestep_orders(steps: int, order: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """diffusers' order list: blocks 1, 2, (3); lower orders at the end; last order 1 at sigma = 0.
    diffusers forces lower_order_final when steps % order != 0 or the grid ends at zero."""
    if steps % order != 0 or final_zero:
        lower_order_final = True
    block = list(range(1, order + 1))
    if not lower_order_final:
        orders = block * (steps // order)
    elif order == 3:
        tail = {0: [1, 2, 1], 1: [1], 2: [1, 2]}[steps % 3]
        orders = block * ((steps - len(tail)) // 3) + tail
    elif order == 2:
        orders = block * (steps // 2 - 1) + [1, 1] if steps % 2 == 0 else block * (steps // 2) + [1]
    else:
        orders = [1] * steps
    if final_zero:
        orders[-1] = 1
    return orders


def singlestep_plan(sampler) -> list[PlannedStep]:
    g, o = sampler.grid, sampler.options
    n, alg = g.steps, o["algorithm_type"]
    lam = [lam_of(k) for k in g.sigma]
    scale, slip = _third_order_rule(sampler, multistep=False)
    orders = singlestep_orders(n, o["order"], o["lower_order_final"], g.sigma[-1] == 0)
    plan = []
    for i in range(n):
        order = min(orders[i], i + 1)
        start = i - order + 1
        tr = transfer(alg, g.sigma[start], g.sigma[i + 1], o.get("eta", 1.0))
        offsets = [lam[j] - lam[start] for j in range(start, i + 1)]
        nodes = tuple(range(start, i + 1))
        if order == 3 and o["solver_type"] == "midpoint":
            # the DPM-Solver-3 final update: only the second intermediate value, with its Taylor weight
            offsets, nodes = [offsets[0], offsets[2]], (nodes[0], nodes[2])
            coefs = update_weights(tr, offsets, "heun")
        else:
            coefs = update_weights(tr, offsets, o["solver_type"], scale, slip)
        plan.append(PlannedStep(float(g.t[i]), float(g.sigma[i]), start, nodes, tuple(coefs), tr.decay,
                                tr.noise, alg.startswith("sde")))
    return plan


def grid_program(sampler, x, rng):
    """Run the sampler's plan: one model evaluation per grid point."""
    data = is_data_form(sampler.opt("algorithm_type"))
    pp = sampler.options.get("cfg_pp", False)   # CFG++: multistep data form only (the alias narrows it)
    values, starts = {}, {}
    for i, step in enumerate(sampler.plan):
        pred = yield Eval(x, step.t, step.k, uncond=pp)
        starts[i] = cfg_pp_start(x, pred, pp, vp_coefficients(step.k)[0])
        values[i] = pred.x0 if data else pred.eps
        out = starts[step.base] * step.decay
        for j, c in zip(step.nodes, step.coefs):
            out = out.add(values[j], alpha=c)
        if step.draws:
            z = rng.randn_like(x, sampler.grid.sigma[step.base], sampler.grid.sigma[i + 1])
            if step.noise:
                out = out.add(z, alpha=step.noise)
        x = out
        if pp:   # the history keeps the unconditional x0
            values[i] = pred.uncond_x0
        for old in [j for j in values if j < i - 2]:  # no update looks further back than 3 points
            del values[old], starts[old]
    return x


# ============================================================================================
# The paper's single-step solvers (intermediate points inside a step).
SINGLESTEP_NODES = {1: (), 2: (0.5,), 3: (1 / 3, 2 / 3)}


def _point(sampler, lam: float) -> tuple[float, float]:
    """(model time, k-sigma) at lambda (fractional timestep, exact sigma)."""
    k = math.exp(-lam)
    return float(sampler.schedule.t_of_sigma(k)), k


def singlestep_update(sampler, x, lam_s, k_s, m_s, lam_t, order, rs, midpoint_final):
    """A generator for one DPM-Solver-k step from lambda_s to lambda_t given the model value at
    its start: intermediate points at lambda_s + r h (r in rs); yields their Evals.
    Returns (x_t, x_lower) where x_lower is the embedded lower-order solution
    (order 1 within order 2, order 2 within order 3) for error control."""
    alg = sampler.opt("algorithm_type")
    data = is_data_form(alg)
    solver_type = sampler.opt("solver_type")
    h = lam_t - lam_s
    k_t = math.exp(-lam_t)

    def go(k_to, nodes, values, rule):
        tr = transfer(alg, k_s, k_to)
        coefs = update_weights(tr, [r * h for r in nodes], rule)
        out = x * tr.decay
        for c, v in zip(coefs, values):
            out = out.add(v, alpha=c)
        return out

    if order == 1:
        x_t = go(k_t, [0.0], [m_s], "heun")
        return x_t, x_t
    values = [m_s]
    nodes = [0.0]
    second = None   # the second-order solution through the first intermediate point
    for n_done, r in enumerate(rs):
        t_r, k_r = _point(sampler, lam_s + r * h)
        # first intermediate by a first-order step, the second by the second-order (heun) one
        x_r = go(k_r, nodes, values, "heun")
        pred = yield Eval(x_r, t_r, k_r)
        values.append(pred.x0 if data else pred.eps)
        nodes.append(r)
        if n_done == 0:
            second = go(k_t, nodes, values, solver_type)
    if order == 2:   # DPM-Solver-2, with DDIM as the embedded lower-order solution
        return second, go(k_t, [0.0], [m_s], "heun")
    if midpoint_final:   # DPM-Solver-3: only the r2 value, with its Taylor weight
        x_t = go(k_t, [nodes[0], nodes[2]], [values[0], values[2]], "heun")
    else:
        x_t = go(k_t, nodes, values, "heun")
    return x_t, second


def fast_orders(steps: int, order: int) -> list[int]:
    """DPM-Solver-fast: the orders of the outer steps, summing to exactly ``steps`` evaluations."""
    if order == 3:
        k = steps // 3 + 1
        return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[steps % 3]
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    return [1] * steps


def fast_grid(sampler) -> Grid:
    return lambda_uniform_grid(sampler, len(fast_orders(sampler.steps, sampler.opt("order"))) + 1)


def fast_program(sampler, x, rng):
    g = sampler.grid
    data = is_data_form(sampler.opt("algorithm_type"))
    midpoint = sampler.opt("solver_type") == "midpoint"
    lam = [lam_of(k) for k in g.sigma]
    for i, order in enumerate(fast_orders(sampler.steps, sampler.opt("order"))):
        pred = yield Eval(x, float(g.t[i]), float(g.sigma[i]))
        m_s = pred.x0 if data else pred.eps
        x, _ = yield from singlestep_update(sampler, x, lam[i], float(g.sigma[i]), m_s, lam[i + 1], order,
                                            SINGLESTEP_NODES[order], midpoint)
    return x


def adaptive_grid(sampler) -> Grid:
    order = sampler.opt("order")
    if sampler.steps < order:
        raise ValueError(f"steps={sampler.steps} is too small for dpm-solver-adaptive with order={order}: "
                         f"steps is the evaluation budget and one step costs {order}")
    return lambda_uniform_grid(sampler, 2)


def _rms_error(x_high, x_low, x_prev, rtol, atol) -> float:
    """max over the batch of the RMS of (x_high - x_low) / max(atol, rtol * max(|x_low|, |x_prev|))."""
    scale = torch.clamp(rtol * torch.maximum(x_low.abs(), x_prev.abs()), min=atol)
    ratio = ((x_high - x_low) / scale).reshape(x_high.shape[0], -1)
    return float(ratio.square().mean(dim=1).sqrt().max())


H_INIT, SAFETY = 0.05, 0.9   # the paper's first step (in lambda) and step-size safety factor


def adaptive_program(sampler, x, rng):
    g = sampler.grid
    order = sampler.opt("order")
    rtol, atol = sampler.opt("rtol"), sampler.opt("atol")
    data = is_data_form(sampler.opt("algorithm_type"))
    midpoint = sampler.opt("solver_type") == "midpoint"
    lam_s, lam_end = lam_of(float(g.sigma[0])), lam_of(float(g.sigma[-1]))
    t_s, k_s = float(g.t[0]), float(g.sigma[0])
    h, used, m_s, x_prev = H_INIT, 0, None, x
    while lam_s < lam_end:
        cost = order if m_s is None else order - 1
        left = sampler.steps - used - cost
        final = left < order          # no budget for another full step after this one: finish now
        h = lam_end - lam_s if final else min(h, lam_end - lam_s)
        if m_s is None:
            pred = yield Eval(x, t_s, k_s)
            m_s = pred.x0 if data else pred.eps
        used += cost
        lam_t = lam_end if final or lam_s + h >= lam_end else lam_s + h
        x_high, x_low = yield from singlestep_update(sampler, x, lam_s, k_s, m_s, lam_t, order,
                                                     SINGLESTEP_NODES[order], midpoint)
        err = _rms_error(x_high, x_low, x_prev, rtol, atol)
        if err <= 1.0 or final:
            x, x_prev, lam_s = x_high, x_low, lam_t
            t_s, k_s = _point(sampler, lam_s)
            if lam_s >= lam_end:
                t_s, k_s = float(g.t[-1]), float(g.sigma[-1])
            m_s = None
        h = SAFETY * h * (err ** (-1.0 / order) if err > 0 else math.inf)
    return x


# ============================================================================================
# diffusers configs: DPMSolverMultistepScheduler / DPMSolverSinglestepScheduler.
def translate_dpm_config(cfg: dict, method: str) -> dict:
    """diffusers' DPM-Solver config keys that are not one-to-one options."""
    single = method == "dpm-solver-singlestep"
    for key in ("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"):
        if cfg.get(key):
            raise ValueError(f"scheduler config key {key}=True is not supported (VP schedules only; "
                             f"karras, lu-lambda and exponential grids are)")
    if sum(bool(cfg.get(k)) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")) > 1:
        raise ValueError("scheduler config: only one of use_karras_sigmas, use_exponential_sigmas, "
                         "use_beta_sigmas can be true")
    # these classes have no sigma_min / sigma_max / rho keys (another class's config may)
    out = dict(sigma_min=None, sigma_max=None, rho=None, third_order="diffusers")
    # diffusers rounds karras / lu timesteps except on squaredcos_cap_v2 (multistep), where the
    # int64 cast truncates them; exponential grids are always truncated.
    floor = not single and cfg.get("beta_schedule") == "squaredcos_cap_v2"
    if cfg.get("use_karras_sigmas"):
        out.update(spacing="karras", round_timesteps=True, timestep_rounding="floor" if floor else "round")
    elif cfg.get("use_lu_lambdas") and not single:
        out.update(spacing="logsnr", round_timesteps=True, timestep_rounding="floor" if floor else "round")
    elif cfg.get("use_exponential_sigmas"):
        out.update(spacing="logsnr", round_timesteps=True, timestep_rounding="floor")
    elif single:   # the single-step class only has linspace tables
        out.update(spacing="linspace")
    if single:
        out["steps_offset"] = 0
    clip = cfg.get("lambda_min_clipped")
    out["lambda_min"] = None if clip is None or (math.isinf(clip) and clip < 0) else float(clip)
    if cfg.get("algorithm_type") == "deis":   # diffusers maps these foreign values silently
        out["algorithm_type"] = "dpmsolver++"
    if cfg.get("solver_type") in ("logrho", "bh1", "bh2"):
        out["solver_type"] = "midpoint"
    return out


_SHARED = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
               trained_betas=None, solver_order=2, prediction_type="epsilon", thresholding=False,
               dynamic_thresholding_ratio=0.995, sample_max_value=1.0, algorithm_type="dpmsolver++",
               solver_type="midpoint", use_karras_sigmas=False, use_exponential_sigmas=False,
               use_beta_sigmas=False, use_flow_sigmas=False, final_sigmas_type="zero",
               lambda_min_clipped=-math.inf, variance_type=None, timestep_spacing="linspace")


def _multistep_class(*algorithms) -> Diffusers:
    """DPMSolverMultistepScheduler; a config picks the method by its algorithm_type."""
    return Diffusers("DPMSolverMultistepScheduler",
                     dict(_SHARED, lower_order_final=True, euler_at_final=False, use_lu_lambdas=False, steps_offset=0,
                          rescale_betas_zero_snr=False),
                     translate_dpm_config,
                     (lambda cfg: cfg.get("algorithm_type", "dpmsolver++") in algorithms) if algorithms else None)


# ============================================================================================
# Registration.
MULTISTEP_OPTIONS = GRID_OPTIONS + THRESHOLD_OPTIONS + (
    "noise", "final_sigmas_type", "order", "algorithm_type", "solver_type", "lower_order_final", "euler_at_final",
    "lambda_min", "timestep_rounding", "third_order")
SINGLESTEP_OPTIONS = GRID_OPTIONS + THRESHOLD_OPTIONS + (
    "noise", "final_sigmas_type", "order", "algorithm_type", "solver_type", "lower_order_final", "lambda_min",
    "timestep_rounding", "third_order")
PAPER_OPTIONS = THRESHOLD_OPTIONS + ("sigma_min", "sigma_max", "order", "algorithm_type", "solver_type")

DIFFUSERS_GRID = dict(spacing="linspace", round_timesteps=True, final_sigmas_type="zero")
MULTISTEP_DEFAULTS = dict(DIFFUSERS_GRID, order=2, solver_type="midpoint", lower_order_final=True,
                          euler_at_final=False, third_order="diffusers")
PAPERS = "Lu, Zhou, Bao, Chen, Li, Zhu 2022 (arXiv:2206.00927, arXiv:2211.01095)"
MULTISTEP_CHOICES = {"order": (1, 2, 3), "algorithm_type": ALGORITHMS, "solver_type": ("midpoint", "heun")}
SDE_NOTE = ("stochastic: the order is that of its eta = 0 path (the ODE dpmsolver++ with the same grid); "
            "with noise it solves the SDE")

register(Method(
    name="dpm-solver", title="DPM-Solver (multistep)", paper=PAPERS, order=2, stochastic=False,
    options=MULTISTEP_OPTIONS, family="dpm", defaults=dict(MULTISTEP_DEFAULTS, algorithm_type="dpmsolver"),
    choices=MULTISTEP_CHOICES, program=grid_program, grid=dpm_grid, plan=multistep_plan,
    nfe=lambda s: s.grid.steps, diffusers=_multistep_class("dpmsolver", "sde-dpmsolver")))
alias("dpm-solver", "dpm-solver++", "DPM-Solver++ (multistep)", defaults=dict(algorithm_type="dpmsolver++"),
      diffusers=_multistep_class("dpmsolver++", "deis"))
# The SDE-defaulting aliases also offer eta (the noise amount: 1 = the SDE, 0 = its ODE limit).
alias("dpm-solver", "sde-dpm-solver++", "SDE-DPM-Solver++ (multistep)", stochastic=True, order_note=SDE_NOTE,
      options=MULTISTEP_OPTIONS + ("eta",), defaults=dict(algorithm_type="sde-dpmsolver++", eta=1.0),
      diffusers=_multistep_class("sde-dpmsolver++"))
KDIFFUSION = dict(spacing="karras", round_timesteps=False, lower_order_final=False, third_order="reference",
                  algorithm_type="sde-dpmsolver++", eta=1.0)
alias("sde-dpm-solver++", "dpm++2m-sde", "DPM++ 2M SDE (k-diffusion)", defaults=dict(KDIFFUSION, order=2),
      choices=dict(MULTISTEP_CHOICES, order=(2,), algorithm_type=("sde-dpmsolver++",)),
      diffusers=_multistep_class())
# k-diffusion's dpmpp_2m (its final step first order, no lower orders before it, fractional model times)
alias("dpm-solver++", "dpm++2m-cfg++", "DPM++ 2M CFG++", paper="Chung, Kim, Park, Nam, Ye 2024, CFG++ "
      "(arXiv:2406.08070); " + PAPERS, options=MULTISTEP_OPTIONS + ("cfg_pp",),
      defaults=dict(order=2, lower_order_final=False, round_timesteps=False, cfg_pp=True),
      choices=dict(MULTISTEP_CHOICES, order=(2,), algorithm_type=("dpmsolver++",)), diffusers=None)
# k-diffusion's dpmpp_2m_sde with solver_type='heun': the slope weighed by its Taylor weight (phi_2)
alias("dpm++2m-sde", "dpm++2m-sde-heun", "DPM++ 2M SDE Heun (k-diffusion)", defaults=dict(solver_type="heun"))
alias("sde-dpm-solver++", "dpm++3m-sde", "DPM++ 3M SDE (k-diffusion)",
      defaults=dict(KDIFFUSION, order=3, solver_type="heun"),
      choices=dict(MULTISTEP_CHOICES, order=(3,), algorithm_type=("sde-dpmsolver++",)),
      diffusers=_multistep_class(), order=2, nominal_order=3,
      order_note=SDE_NOTE + "; third_order='reference' (k-diffusion's weights) is second-order accurate, "
      "third_order='taylor' gives order 3")

register(Method(
    name="dpm-solver-singlestep", title="DPM-Solver (single-step, diffusers)", paper=PAPERS, order=2,
    stochastic=False, options=SINGLESTEP_OPTIONS, family="dpm",
    defaults=dict(DIFFUSERS_GRID, order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
                  lower_order_final=False, third_order="diffusers"),
    choices={"order": (1, 2, 3), "algorithm_type": ("dpmsolver", "dpmsolver++", "sde-dpmsolver++"),
             "solver_type": ("midpoint", "heun")},
    program=grid_program, grid=dpm_grid, plan=singlestep_plan, nfe=lambda s: s.grid.steps,
    diffusers=Diffusers("DPMSolverSinglestepScheduler", dict(_SHARED, lower_order_final=False),
                        translate_dpm_config)))

register(Method(
    name="dpm-solver-fast", title="DPM-Solver-fast", paper=PAPERS, order=3, stochastic=False,
    options=PAPER_OPTIONS, defaults=dict(order=3, algorithm_type="dpmsolver", solver_type="midpoint"),
    choices={"order": (1, 2, 3), "algorithm_type": ("dpmsolver", "dpmsolver++"),
             "solver_type": ("midpoint", "heun")},
    program=fast_program, grid=fast_grid, nfe=lambda s: s.steps))

register(Method(
    name="dpm-solver-adaptive", title="DPM-Solver-12/23 (adaptive step size)", paper=PAPERS, order=3,
    stochastic=False, options=PAPER_OPTIONS + ("rtol", "atol"),
    order_note="adaptive: the error follows rtol / atol, not the evaluation cap; the order is that of its "
               "DPM-Solver-3 steps, measured against the evaluations its tolerance takes",
    # data form by default: when the evaluation cap forces one long last step, the noise form's
    # x0 = (x - sigma eps) / alpha blows up (relative error ~15 at 8 NFE on Gaussian data vs 0.3)
    defaults=dict(order=3, algorithm_type="dpmsolver++", solver_type="midpoint"),
    choices={"order": (2, 3), "algorithm_type": ("dpmsolver", "dpmsolver++"),
             "solver_type": ("midpoint", "heun")},
    program=adaptive_program, grid=adaptive_grid, nfe=lambda s: s.steps, adaptive=True))
