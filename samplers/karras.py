"""The k-diffusion family (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", and Katherine Crowson's k-diffusion samplers).

These solvers integrate the probability-flow ODE dx/dk = (x - x0(x, k)) / k of the variance-
exploding sample x = x0 + k eps, with k = sigma_vp / alpha_vp.  The network sees the VP sample
x / sqrt(1 + k^2), so each program keeps x in VE form and hands the model the scaled copy.

- ``euler``      Euler steps (EulerDiscreteScheduler), with Karras' "churn" (s_churn, s_tmin,
                 s_tmax, s_noise).
- ``euler-a``    Euler ancestral: an Euler step to sigma_down, then fresh noise of std sigma_up.
- ``heun``       Heun's method (trapezoid corrector), 2N-1 evaluations; the last step is Euler.
- ``dpm2``       DPM-Solver-2 in k form: the derivative re-evaluated at the geometric midpoint.
- ``dpm2-a``     DPM2 to sigma_down plus ancestral noise.
- ``lms``        linear multistep (orders 1-4) with coefficients integrated in sigma.
- ``dpm++2s-a``  DPM-Solver++(2S) to sigma_down plus ancestral noise (no diffusers class).

A zero-terminal-SNR schedule has k = inf at its last step; like diffusers, these methods clamp
that end to alphas_cumprod = 2**-24 (k = 4096), because a VE sample cannot have infinite scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .core import GRID_OPTIONS, X0_OPTIONS, Diffusers, Eval, Method, Option, add_options, register
from .ddim import TABLE_SPACINGS  # also declares the shared "eta" option
from .diffusers_config import COMMON
from .expint import end_at_sigma_min, sigma_range as range_of_sigmas
from .grids import CONTINUOUS_SPACINGS, Grid, spaced_timesteps
from .model_wrapper import cfg_pp_start

add_options(
    Option("s_churn", 0.0, "Karras churn: raise sigma by gamma = min(s_churn / N, sqrt(2) - 1) with fresh "
           "noise before each step", float, low=0.0, high=1000.0),
    Option("s_tmin", 0.0, "churn only where sigma >= s_tmin", float, low=0.0, high=1e6),
    Option("s_tmax", None, "churn only where sigma <= s_tmax (none: no upper limit)", float, low=0.0, high=1e6,
           nullable=True),
    Option("s_noise", 1.0, "scale of the fresh noise (churn / ancestral steps)", float, low=0.0, high=10.0),
    Option("churn_rule", "diffusers", "how churn meets the model: 'diffusers' evaluates the model before adding "
           "the noise and reuses its output at the raised sigma (EulerDiscreteScheduler); 'karras' adds the "
           "noise first and evaluates the model at the raised sigma (Karras et al. Algorithm 2)", str,
           ("diffusers", "karras")),
    Option("interpolation_type", "linear", "sigma between train timesteps on timestep-list grids: 'linear' in "
           "sigma (diffusers' Euler family), 'log' (linear in log sigma, the inverse of the karras/logsnr "
           "mapping), 'log_linear' (diffusers' Euler option: N+1 sigmas uniform in log sigma over the whole "
           "schedule, ending at sigma_min, while the model still gets the table's timesteps)", str,
           ("linear", "log", "log_linear")),
    Option("init_noise", "auto", "scale of the starting noise z: 've' = sigma_max z (Karras), 'vp' = a unit-"
           "variance VP sample, sqrt(sigma_max^2 + 1) z; 'auto' = diffusers' rule: vp for spacing 'leading' "
           "(or a karras/logsnr range taken from it), ve otherwise", str, ("auto", "ve", "vp")),
    Option("sigma_range", "schedule", "default sigma_min/sigma_max of a karras/logsnr grid: the whole train "
           "schedule, or the ends of that timestep table for these steps (diffusers' use_karras_sigmas / "
           "use_exponential_sigmas take the range from the config's timestep_spacing)", str,
           ("schedule",) + TABLE_SPACINGS),
    Option("timestep_type", "discrete", "what the model is given as time: the train timestep, or "
           "'continuous' = 0.25 ln(sigma) (EDM's c_noise; diffusers' Euler with v_prediction)", str,
           ("discrete", "continuous")),
)

MAX_CHURN = math.sqrt(2.0) - 1.0  # Karras et al.: gamma <= sqrt(2) - 1 keeps the raised sigma below sqrt(2) sigma


# --------------------------------------------------------------------------------------------
# The grid: diffusers' Euler-family tables (float linspace, sigma interpolated linearly in t).
def _table_sigmas(sampler, spacing: str, interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    ts = spaced_timesteps(spacing, sampler.steps, sampler.schedule.num_train_timesteps,
                          steps_offset=sampler.opt("steps_offset"), integer=False)
    return ts, sampler.schedule.clamp_sigma(sampler.schedule.sigma_at(ts, interpolation))


def sigma_range(sampler) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a karras/logsnr grid: the options, else the ``sigma_range`` source."""
    base = sampler.opt("sigma_range")
    if base == "schedule" or sampler.opt("interpolation_type") == "log_linear":
        # log_linear spans the whole schedule whatever the table (diffusers)
        return range_of_sigmas(sampler)
    interp = "log" if sampler.opt("interpolation_type") == "log" else "linear"
    sig = _table_sigmas(sampler, base, interp)[1]
    return range_of_sigmas(sampler, (float(sig[-1]), float(sig[0])))


def karras_family_grid(sampler) -> Grid:
    spacing, interp = sampler.opt("spacing"), sampler.opt("interpolation_type")
    if spacing in CONTINUOUS_SPACINGS:
        lo, hi = sigma_range(sampler)
        grid = sampler.make_grid(sigma_min=lo, sigma_max=hi, final="zero")
        sigma = grid.sigma
    else:
        grid = sampler.make_grid(interpolation="log" if interp == "log" else "linear", integer_linspace=False,
                                 final="zero")
        sigma = sampler.schedule.clamp_sigma(grid.sigma)
        if interp == "log_linear":
            # diffusers: N+1 log-uniform sigmas from the schedule's top to sigma(0); the run ends there
            table = sampler.schedule.finite_sigmas
            return Grid(t=grid.t, sigma=np.exp(np.linspace(np.log(table[-1]), np.log(table[0]), grid.steps + 1)))
    if sampler.opt("final_sigmas_type") == "sigma_min":
        last, end = float(sigma[-2]), sampler.schedule.sigma_min
        if end > last * (1 + 1e-9):   # a grid already ending at sigma_min up to rounding is fine
            raise ValueError(f"final_sigmas_type='sigma_min': the grid already ends at sigma={last:.4g}, below "
                             f"the schedule's sigma_min={end:.4g}; use final_sigmas_type='zero' or a larger sigma_min")
        sigma = end_at_sigma_min(sampler.schedule, sigma)
    return Grid(t=grid.t, sigma=sigma)


# --------------------------------------------------------------------------------------------
# Per-grid constants, computed once per sampler (python floats: no tensor work in the loop).
def c_in(k: float) -> float:
    """VE -> VP scale of the model input."""
    return 1.0 / math.sqrt(1.0 + k * k)


def init_scale(sampler) -> float:
    rule = sampler.opt("init_noise")
    if rule == "auto":
        spacing = sampler.opt("spacing")
        leading = spacing == "leading" or (spacing in CONTINUOUS_SPACINGS and sampler.opt("sigma_range") == "leading")
        rule = "vp" if leading else "ve"
    k0 = float(sampler.grid.sigma[0])
    return math.sqrt(k0 * k0 + 1.0) if rule == "vp" else k0


def ancestral_step(k: float, k_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up): a deterministic step to sigma_down then noise of std sigma_up reaches
    k_next with the right variance; eta scales the noise part (0 = ODE step)."""
    if k_next == 0 or eta == 0:
        return k_next, 0.0
    up = min(k_next, eta * math.sqrt(k_next * k_next * (k * k - k_next * k_next) / (k * k)))
    return math.sqrt(k_next * k_next - up * up), up


@dataclass(frozen=True)
class KarrasPlan:
    """Constants of one sampler's grid, computed when the sampler is built (python floats)."""
    ks: list            # k-sigma of every grid point
    steps: int
    c_in: list          # VE -> VP input scale per point
    init: float         # scale of the starting noise
    model_t: list       # model time per point
    k_hat: list         # per step the churned sigma (k itself without churn)
    k_hat_t: list
    down: list          # per step sigma_down / sigma_up of the ancestral split (k_next, 0 without noise)
    up: list
    mid: list           # per step the geometric midpoint towards its target (two-stage methods)
    mid_t: list
    lms: list           # per step the LMS weights (lms only)


def karras_plan(sampler) -> KarrasPlan:
    ks = [float(k) for k in sampler.grid.sigma]
    name = sampler.method.name
    ancestral = "eta" in sampler.options
    eta = sampler.opt("eta") if ancestral else 0.0
    pairs = [ancestral_step(k, kn, eta) for k, kn in zip(ks[:-1], ks[1:])]
    down, up = [d for d, _ in pairs], [u for _, u in pairs]
    mid = [math.sqrt(k * kt) for k, kt in zip(ks[:-1], down)]   # never rounded, as in diffusers
    k_hat = churn_levels(sampler, ks) if "s_churn" in sampler.options else ks[:-1]
    return KarrasPlan(
        ks=ks, steps=len(ks) - 1, c_in=[c_in(k) for k in ks], init=init_scale(sampler),
        model_t=[model_time(sampler, k, float(t)) for t, k in zip(sampler.grid.t, ks)],
        k_hat=k_hat, k_hat_t=model_times(sampler, k_hat), down=down, up=up, mid=mid,
        mid_t=model_times(sampler, mid), lms=lms_coefficients(ks, sampler.opt("order")) if name == "lms" else [])


def model_time(sampler, k: float, t: float | None = None) -> float:
    """The time the model gets at noise level k: the grid's own time t where there is one, else
    the (fractional) train timestep of k; EDM's 0.25 ln k with timestep_type='continuous'."""
    if sampler.options.get("timestep_type") == "continuous":
        return 0.25 * math.log(k) if k > 0 else 0.0
    return float(sampler.schedule.t_of_sigma(k)) if t is None else t


def model_times(sampler, ks) -> list[float]:
    """model_time of many off-grid noise levels at once."""
    if sampler.options.get("timestep_type") == "continuous":
        return [model_time(sampler, k) for k in ks]
    return [float(t) for t in sampler.schedule.t_of_sigma(np.asarray(ks, dtype=np.float64))]


def finish(x, k_end: float):
    """The result in VP scale (the same as VE when the run ends at sigma 0)."""
    return x if k_end == 0 else x * c_in(k_end)


# --------------------------------------------------------------------------------------------
# Programs.
def churn_levels(sampler, ks) -> list[float]:
    """Per step the raised sigma k_hat = k (1 + gamma) of Karras' churn (k itself where none)."""
    churn, s_tmin, s_tmax = sampler.opt("s_churn"), sampler.opt("s_tmin"), sampler.opt("s_tmax")
    s_tmax = math.inf if s_tmax is None else s_tmax
    # diffusers divides s_churn by len(sigmas) - 1, one more than N with log_linear's extra sigma
    intervals = len(ks) - 1 + (sampler.opt("interpolation_type") == "log_linear"
                               and sampler.opt("spacing") not in CONTINUOUS_SPACINGS)
    gamma = min(churn / intervals, MAX_CHURN)
    return [k * (1 + gamma) if churn > 0 and s_tmin <= k <= s_tmax else k for k in ks[:-1]]


def euler_program(sampler, x, rng):
    p = sampler.plan
    s_noise, karras_rule = sampler.options.get("s_noise", 1.0), sampler.options.get("churn_rule") == "karras"
    pp = sampler.options.get("cfg_pp", False)
    x = x * p.init
    for i, (k, k_hat) in enumerate(zip(p.ks[:-1], p.k_hat)):
        if k_hat == k:  # a plain Euler step
            pred = yield Eval(x * p.c_in[i], p.model_t[i], k, uncond=pp)
            x = cfg_pp_start(x, pred, pp)
            x.add_(pred.uncond_eps if pp else pred.eps, alpha=p.ks[i + 1] - k)
            continue
        spread = s_noise * math.sqrt(k_hat * k_hat - k * k)
        # churn noise is a fresh draw, not a Brownian increment: [k, k_hat] overlaps the step above
        if karras_rule:
            x = x.add(rng.randn_like(x), alpha=spread)
            pred = yield Eval(x * c_in(k_hat), p.k_hat_t[i], k_hat)
            d = pred.eps
        else:
            pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
            x = x.add(rng.randn_like(x), alpha=spread)
            d = (x - sampler.x0_processed(_diffusers_churn_x0(sampler.prediction_type, pred.output, x, k, k_hat))) / k_hat
        x.add_(d, alpha=p.ks[i + 1] - k_hat)
    return finish(x, p.ks[-1])


def _diffusers_churn_x0(prediction_type, output, x, k, k_hat):
    """EulerDiscreteScheduler's x0 after churn: the output (taken at sigma k) read at the raised
    sample; eps is scaled by sigma_hat, v by sigma (as diffusers does)."""
    if prediction_type == "epsilon":
        return x - k_hat * output
    if prediction_type == "v_prediction":
        return output * (-k / math.sqrt(k * k + 1)) + x / (k * k + 1)
    return output


def euler_ancestral_program(sampler, x, rng):
    p = sampler.plan
    eta, s_noise, pp = sampler.opt("eta"), sampler.opt("s_noise"), sampler.options.get("cfg_pp", False)
    x = x * p.init
    for i in range(p.steps):
        k = p.ks[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k, uncond=pp)
        x = cfg_pp_start(x, pred, pp)
        x.add_(pred.uncond_eps if pp else pred.eps, alpha=p.down[i] - k)
        if eta > 0:  # diffusers draws on every step, also the last (where sigma_up = 0)
            x.add_(rng.randn_like(x, k, p.ks[i + 1]), alpha=p.up[i] * s_noise)
    return finish(x, p.ks[-1])


def heun_program(sampler, x, rng):
    p = sampler.plan
    x = x * p.init
    for i in range(p.steps):
        k, k_next = p.ks[i], p.ks[i + 1]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        d = pred.eps
        trial = x.add(d, alpha=k_next - k)
        if k_next == 0:  # the trapezoid would need the model at sigma 0: stop with the Euler step
            x = trial
            continue
        pred = yield Eval(trial * p.c_in[i + 1], p.model_t[i + 1], k_next)
        half = 0.5 * (k_next - k)  # trapezoid: the mean of the two slopes
        x.add_(d, alpha=half).add_(pred.eps, alpha=half)
    return finish(x, p.ks[-1])


def dpm2_program(sampler, x, rng):
    """DPM2, and DPM2 ancestral: the step goes to sigma_down (the next sigma without noise), then
    adds fresh noise of std sigma_up."""
    p = sampler.plan
    eta, s_noise = sampler.options.get("eta", 0.0), sampler.options.get("s_noise", 1.0)
    x = x * p.init
    for i in range(p.steps):
        k, down, k_mid = p.ks[i], p.down[i], p.mid[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        d = pred.eps
        if down == 0:  # Euler to sigma 0 (the midpoint would be 0 too)
            x = x.add(d, alpha=-k)
            continue
        trial = x.add(d, alpha=k_mid - k)
        pred = yield Eval(trial * c_in(k_mid), p.mid_t[i], k_mid)
        x.add_(pred.eps, alpha=down - k)
        if eta > 0:
            x.add_(rng.randn_like(x, k, p.ks[i + 1]), alpha=p.up[i] * s_noise)
    return finish(x, p.ks[-1])


def dpmpp_2s_ancestral_program(sampler, x, rng):
    """DPM-Solver++(2S) in k form: in VE, the data-prediction exponential step from k to k' is
    x' = x0 + (k'/k)(x - x0); a half step in log sigma gives the midpoint x0 the full step uses."""
    p = sampler.plan
    eta, s_noise, pp = sampler.opt("eta"), sampler.opt("s_noise"), sampler.options.get("cfg_pp", False)
    x = x * p.init
    for i in range(p.steps):
        k, down, k_mid = p.ks[i], p.down[i], p.mid[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k, uncond=pp)
        x0, x = pred.x0, cfg_pp_start(x, pred, pp)
        if down == 0:
            x = x0
        else:
            trial = torch.lerp(x0, x, k_mid / k)
            pred = yield Eval(trial * c_in(k_mid), p.mid_t[i], k_mid)
            x = torch.lerp(pred.x0, x, down / k)
        if eta > 0 and p.ks[i + 1] > 0:
            x.add_(rng.randn_like(x, k, p.ks[i + 1]), alpha=p.up[i] * s_noise)
    return finish(x, p.ks[-1])


# Gauss-Legendre nodes on [-1, 1]: 3 nodes integrate polynomials up to degree 5 exactly, and a
# Lagrange basis of order <= 4 has degree <= 3.
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(3)


def lms_coefficients(sigmas, order: int) -> list[tuple[float, ...]]:
    """Per step i: weights of the newest min(i+1, order) derivatives (newest first), each the
    integral from sigma_i to sigma_{i+1} of the Lagrange basis polynomial through those sigmas."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    out = []
    for i in range(len(sigmas) - 1):
        nodes = sigmas[i - np.arange(min(i + 1, order))]
        a, b = sigmas[i], sigmas[i + 1]
        tau = 0.5 * (b - a) * _GAUSS_NODES + 0.5 * (a + b)
        weights = []
        for j in range(len(nodes)):
            basis = np.ones_like(tau)
            for m in range(len(nodes)):
                if m != j:
                    basis *= (tau - nodes[m]) / (nodes[j] - nodes[m])
            weights.append(float(0.5 * (b - a) * np.dot(_GAUSS_WEIGHTS, basis)))
        out.append(tuple(weights))
    return out


def lms_program(sampler, x, rng):
    p = sampler.plan
    order = sampler.opt("order")
    history = []  # derivatives, newest last
    x = x * p.init
    for i in range(p.steps):
        k = p.ks[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        history = (history + [pred.eps])[-order:]
        for w, d in zip(p.lms[i], reversed(history)):
            x.add_(d, alpha=w)
    return finish(x, p.ks[-1])


# --------------------------------------------------------------------------------------------
# Registration.
BASE_OPTIONS = GRID_OPTIONS + X0_OPTIONS + ("final_sigmas_type", "interpolation_type", "init_noise", "sigma_range")
NO_LOG_LINEAR = {"interpolation_type": ("linear", "log")}
ANCESTRAL = ("eta", "s_noise", "noise")
KARRAS_PAPER = "Karras, Aittala, Aila, Laine 2022 (arXiv:2206.00364); k-diffusion (Crowson)"


def two_stage_nfe(s) -> int:
    """One evaluation per step plus a second on every step whose target (its end, or sigma_down
    for the ancestral ones) is not sigma 0."""
    return s.plan.steps + sum(1 for k in s.plan.down if k > 0)


def translate_karras_config(cfg: dict, method: str) -> dict:
    """use_karras_sigmas / use_exponential_sigmas / timestep_type of the Euler-family classes."""
    out = {}
    if method != "euler":  # only EulerDiscreteScheduler reads these keys
        out.update(sigma_min=None, sigma_max=None, interpolation_type="linear")
    flags = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas") if cfg.get(k)]
    if len(flags) > 1:
        raise ValueError(f"scheduler config sets {', '.join(flags)}: at most one of them may be true")
    if "use_beta_sigmas" in flags:
        raise ValueError("scheduler config use_beta_sigmas=True is not supported; allowed: use_karras_sigmas or "
                         "use_exponential_sigmas")
    if flags:
        spacing = cfg.get("timestep_spacing", "linspace")
        out.update(spacing="karras" if flags[0] == "use_karras_sigmas" else "logsnr", rho=7.0,
                   sigma_range=spacing if spacing in TABLE_SPACINGS else "schedule")
        if method == "lms":  # LMSDiscreteScheduler ignores sigma_min / sigma_max
            out.update(sigma_min=None, sigma_max=None)
        # KDPM2 rounds the karras grid's model timesteps (not the exponential ones)
        out["round_timesteps"] = method in ("dpm2", "dpm2-a") and flags[0] == "use_karras_sigmas"
    if method == "euler" and cfg.get("timestep_type") == "continuous" and cfg.get("prediction_type") != "v_prediction":
        out["timestep_type"] = "discrete"  # diffusers gives continuous times only to v_prediction models
    return out


_KARRAS_FLAGS = dict(use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False)
_SD_BETAS = dict(beta_start=0.00085, beta_end=0.012)


def _diffusers(cls: str, translate=translate_karras_config, **defaults) -> Diffusers:
    return Diffusers(cls, dict(COMMON, timestep_spacing="linspace", **defaults), translate)


ANCESTRAL_NOTE = ("stochastic: the order is that of its eta = 0 path ({base}); with eta > 0 it samples the "
                  "reverse SDE")


def _register(name, title, order, stochastic, program, extra=(), nfe=lambda s: s.steps, defaults=None,
              choices=NO_LOG_LINEAR, paper=KARRAS_PAPER, **fields):
    register(Method(name=name, title=title, paper=paper, order=order, stochastic=stochastic,
                    options=BASE_OPTIONS + tuple(extra), program=program, grid=karras_family_grid, nfe=nfe,
                    plan=karras_plan, defaults=dict({"spacing": "linspace"}, **(defaults or {})),
                    choices=dict(choices), **fields))


# euler draws noise only with churn (s_churn > 0), which is off by default
_register("euler", "Euler (Karras / k-diffusion)", 1, False, euler_program,
          ("s_churn", "s_tmin", "s_tmax", "s_noise", "churn_rule", "timestep_type", "noise"), choices={},
          order_note="deterministic by default (s_churn = 0); s_churn > 0 adds Karras' churn noise",
          diffusers=_diffusers("EulerDiscreteScheduler", interpolation_type="linear", sigma_min=None, sigma_max=None,
                               timestep_type="discrete", final_sigmas_type="zero", **_KARRAS_FLAGS))
_register("euler-a", "Euler ancestral", 1, True, euler_ancestral_program, ANCESTRAL, defaults={"eta": 1.0},
          order_note=ANCESTRAL_NOTE.format(base="Euler"),
          diffusers=_diffusers("EulerAncestralDiscreteScheduler", translate=None))
_register("heun", "Heun (2nd order, Karras)", 2, False, heun_program, nfe=two_stage_nfe,
          diffusers=_diffusers("HeunDiscreteScheduler", clip_sample=False, clip_sample_range=1.0, **_SD_BETAS,
                               **_KARRAS_FLAGS))
_register("dpm2", "DPM2 (k-diffusion DPM-Solver-2)", 2, False, dpm2_program, nfe=two_stage_nfe,
          diffusers=_diffusers("KDPM2DiscreteScheduler", **_SD_BETAS, **_KARRAS_FLAGS))
_register("dpm2-a", "DPM2 ancestral", 2, True, dpm2_program, ANCESTRAL, nfe=two_stage_nfe,
          defaults={"eta": 1.0}, order_note=ANCESTRAL_NOTE.format(base="DPM2"),
          diffusers=_diffusers("KDPM2AncestralDiscreteScheduler", **_SD_BETAS, **_KARRAS_FLAGS))
_register("lms", "LMS (linear multistep in sigma)", 3, False, lms_program, ("order",),
          defaults={"order": 4}, nominal_order=4,
          order_note="nominal order 4 (order=4 past derivatives, weights integrated in sigma); on a grid uniform "
                     "in log-SNR, whose steps in sigma shrink geometrically, it measures about 3 (2.8 at NFE 10-50)",
          diffusers=_diffusers("LMSDiscreteScheduler", **_KARRAS_FLAGS))
_register("dpm++2s-a", "DPM-Solver++(2S) ancestral", 2, True, dpmpp_2s_ancestral_program, ANCESTRAL,
          nfe=two_stage_nfe, defaults={"eta": 1.0}, order_note=ANCESTRAL_NOTE.format(base="DPM-Solver++(2S)"),
          paper="Lu et al. 2022, DPM-Solver++ (arXiv:2211.01095); k-diffusion sample_dpmpp_2s_ancestral")
