"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models"), as diffusers' UniPCMultistepScheduler.

Each step is an exponential-integrator step in lambda (half log-SNR) on the data prediction
(``predict_x0=True``) or the noise prediction (``predict_x0=False``): the predictor UniP-p
extrapolates from the last p model outputs; the corrector UniC-p then re-takes the same step
with the model output evaluated at the predicted point (the one the next step needs anyway), so
it costs no extra evaluation and raises the order by one.  ``solver_type`` picks B(h): "bh1"
(B = h) or "bh2" (B = e^h - 1); the two differ only where diffusers uses the simplified weight
1/2 (order-2 predictor, order-1 corrector).

Every update is a fixed linear combination of the current sample and past model outputs, so
the weights are computed once per grid (``sampler.plan``) and the loop only adds tensors.

Where diffusers breaks: a step that lands on sigma = 0 has h = inf, and diffusers' formulas
give NaN there for bh1, for the noise form, and for any order > 1.  We take such a step with
first order and its exact limit (the data form's x0 itself; the noise form's alpha_t * x0), as
DPM-Solver does for a zero final sigma; the result is finite, and in the data form as accurate
as bh2's.  x0 clipping / thresholding apply in both forms (diffusers ignores thresholding in the
noise form).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import GRID_OPTIONS, X0_OPTIONS, Diffusers, Eval, Method, Option, add_options, register
from .diffusers_config import COMMON
from .expint import first_order_at_zero, multistep_grid, phi
from .grids import Grid
from .schedule import vp_coefficients


add_options(
    Option("predict_x0", True, "UniPC: solve in the data form (x0 prediction, diffusers' default) or the "
           "noise form (eps prediction)", bool),
    Option("use_corrector", True, "UniPC: apply the corrector UniC (free: it reuses the next evaluation)", bool),
    Option("disable_corrector", None, "UniPC: step indices whose result is not corrected (diffusers' "
           "disable_corrector; guided sampling often drops the first few)", list, nullable=True),
)

@dataclass
class _Update:
    """x_new = cx * x + sum_j cm[j] * m_j (+ ct * m_new for a corrector); m_0 newest."""
    cx: float
    cm: tuple
    ct: float = 0.0


def _unipc_update(k_from: float, k_to: float, past_k: list, order: int, data_form: bool, bh1: bool,
                  corrector: bool) -> _Update:
    """Weights of UniP-order (corrector=False) or UniC-order (True) from k_from to k_to.

    ``past_k`` holds the noise levels of the older outputs m_1, m_2, ... (newest first).
    """
    a_s, s_s = vp_coefficients(k_from)
    a_t, s_t = vp_coefficients(k_to)
    if k_to == k_from:       # an empty step (diffusers' repeated last sigma)
        return _Update(1.0, (0.0,) * order, 0.0)
    if k_to == 0:            # the exact limit of the first-order step: alpha_t * x0 in either form
        return _Update(0.0 if data_form else a_t / a_s, (a_t if data_form else -(a_t * k_from - s_t),))
    h = math.log(k_from) - math.log(k_to)          # lambda_t - lambda_s
    hh = -h if data_form else h
    lin = s_t / s_s if data_form else a_t / a_s
    w = a_t if data_form else s_t
    w_phi1 = w * math.expm1(hh)                    # w * h * phi_1
    b_h = hh if bh1 else math.expm1(hh)
    rks = [(math.log(k_from) - math.log(k)) / h for k in past_k[:order - 1]]  # (lambda_k - lambda_s) / h
    # B(h) * rho: B(h) b_i = hh * phi_{i+1}(hh) * i!, so the solved weights never divide by B(h)
    g = [hh * phi(i + 1, hh) * math.factorial(i) for i in range(1, order + 1)]
    if corrector:
        nodes = rks + [1.0]
        b_rho = [0.5 * b_h] if order == 1 else list(
            np.linalg.solve(np.array([[r ** i for r in nodes] for i in range(order)]), np.array(g)))
    else:
        nodes = rks
        if order == 1:
            b_rho = []
        elif order == 2:
            b_rho = [0.5 * b_h]
        else:
            b_rho = list(np.linalg.solve(np.array([[r ** i for r in nodes] for i in range(order - 1)]),
                                         np.array(g[:order - 1])))
    # x_new = lin x - w h phi_1 m0 - w sum_k B rho_k (m_k - m0) / r_k, with r = 1 for m_new
    cm = [-w_phi1] + [0.0] * (order - 1)
    for k, (r, br) in enumerate(zip(rks, b_rho), start=1):
        cm[k] -= w * br / r
        cm[0] += w * br / r
    ct = 0.0
    if corrector:
        ct = -w * b_rho[-1]
        cm[0] += w * b_rho[-1]
    return _Update(lin, tuple(float(c) for c in cm), float(ct))


def _orders(sampler) -> list[int]:
    """The predictor order of each step: warm-up, lower_order_final, first order into sigma 0."""
    n, p = sampler.steps, sampler.opt("order")
    orders = []
    for i in range(n):
        order = min(p, n - i) if sampler.opt("lower_order_final") else p
        orders.append(first_order_at_zero(min(order, i + 1), sampler.grid.sigma[i + 1]))
    return orders


@dataclass(frozen=True)
class UniPCPlan:
    predictors: list       # _Update per step
    correctors: list       # _Update or None per evaluation (the corrector of the step before it)


def unipc_plan(sampler) -> UniPCPlan:
    g, data, bh1 = sampler.grid, sampler.opt("predict_x0"), sampler.opt("solver_type") == "bh1"
    orders = _orders(sampler)
    disabled = set(sampler.opt("disable_corrector") or ())
    predictors, correctors = [], [None]
    for i, order in enumerate(orders):
        past = [g.sigma[i - k] for k in range(1, order)]
        predictors.append(_unipc_update(g.sigma[i], g.sigma[i + 1], past, order, data, bh1, False))
        if i + 1 < len(orders):  # the corrector of step i runs after evaluation i + 1
            on = sampler.opt("use_corrector") and i not in disabled
            correctors.append(_unipc_update(g.sigma[i], g.sigma[i + 1], past, order, data, bh1, True)
                              if on else None)
    return UniPCPlan(predictors, correctors)


def _combine(update: _Update, x, outputs, new=None):
    out = x * update.cx if update.cx != 1.0 else x.clone()
    for c, m in zip(update.cm, outputs):
        if c != 0.0:
            out.add_(m, alpha=c)
    if new is not None and update.ct != 0.0:
        out.add_(new, alpha=update.ct)
    return out


def unipc_program(sampler, x, rng):
    predictors, correctors = sampler.plan.predictors, sampler.plan.correctors
    g, data = sampler.grid, sampler.opt("predict_x0")
    newest_first: list = []    # converted model outputs, newest first
    before_step = x            # the sample the previous predictor started from
    for i in range(sampler.steps):
        t, k = g.t[i], g.sigma[i]
        pred = yield Eval(x, t, k)
        m = pred.x0 if data else pred.eps
        if correctors[i] is not None:
            x = _combine(correctors[i], before_step, newest_first, m)
        newest_first = [m] + newest_first[:max(0, sampler.opt("order") - 1)]
        before_step = x
        x = _combine(predictors[i], x, newest_first)
    return x


def _grid(sampler) -> Grid:
    bad = sampler.opt("disable_corrector")
    if bad is not None and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in bad):
        raise ValueError(f"disable_corrector={bad!r} must be a list of step indices (integers)")
    return multistep_grid(sampler)


# --------------------------------------------------------------------------------------------
# diffusers' config keys for the multistep family (shared with deis.py).
def sigma_grid_flags(cfg: dict, cls: str) -> dict:
    """Options for diffusers' use_*_sigmas flags (the grid of the multistep family)."""
    for flag in ("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"):
        if cfg.get(flag):
            raise ValueError(f"scheduler config key {flag!r}=True ({cls}) is not supported; supported grids: "
                             "timestep_spacing linspace/leading/trailing, use_karras_sigmas, use_exponential_sigmas")
    if sum(bool(cfg.get(k)) for k in ("use_karras_sigmas", "use_exponential_sigmas")) > 1:
        raise ValueError(f"scheduler config ({cls}): only one of use_karras_sigmas, use_exponential_sigmas can be true")
    # karras timesteps are rounded; exponential ones are cast to int64 (truncated)
    if cfg.get("use_karras_sigmas"):
        return {"spacing": "karras", "round_timesteps": True, "timestep_rounding": "round"}
    if cfg.get("use_exponential_sigmas"):
        return {"spacing": "logsnr", "round_timesteps": True, "timestep_rounding": "floor"}
    return {}


def _translate_unipc(cfg: dict, method: str) -> dict:
    if cfg.get("solver_p") is not None:
        raise ValueError(f"scheduler config key 'solver_p'={cfg['solver_p']!r} (another scheduler as UniPC's "
                         "predictor) is not supported; allowed: null")
    # the class has no rho or clip_sample keys (a config written for another class may)
    out = dict(sigma_grid_flags(cfg, "UniPCMultistepScheduler"), rho=None, clip_sample=False)
    if cfg.get("solver_type") in ("midpoint", "heun", "logrho"):  # diffusers maps these to bh2
        out["solver_type"] = "bh2"
    return out


register(Method(
    name="unipc", title="UniPC (predictor-corrector)", paper="Zhao, Bai, Rao, Zhou, Lu 2023 (arXiv:2302.04867)",
    order=3, stochastic=False,
    order_note="the option order = p is the predictor UniP-p; the corrector UniC (on by default) raises it "
               "to p + 1, so the default order=2 measures 3 (order p with use_corrector=False)",
    options=GRID_OPTIONS + X0_OPTIONS + ("final_sigmas_type", "timestep_rounding", "order",
                                         "lower_order_final", "solver_type", "predict_x0", "use_corrector",
                                         "disable_corrector"),
    program=unipc_program, grid=_grid, plan=unipc_plan, family="dpm",
    defaults={"spacing": "linspace", "solver_type": "bh2", "order": 2, "final_sigmas_type": "zero"},
    choices={"order": (1, 2, 3), "solver_type": ("bh1", "bh2")},
    diffusers=Diffusers("UniPCMultistepScheduler", dict(
        COMMON, timestep_spacing="linspace", solver_order=2, thresholding=False,
        dynamic_thresholding_ratio=0.995, sample_max_value=1.0, predict_x0=True, solver_type="bh2",
        lower_order_final=True, disable_corrector=[], solver_p=None, use_karras_sigmas=False,
        use_exponential_sigmas=False, use_beta_sigmas=False, use_flow_sigmas=False, final_sigmas_type="zero",
        sigma_min=None, sigma_max=None, use_dynamic_shifting=False), _translate_unipc)))
