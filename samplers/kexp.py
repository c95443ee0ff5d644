"""Data-prediction exponential integrators in k form (x = x0 + k eps, lambda = -log k), on the
k-diffusion grids; the step itself is written once in ``expint.data_step``.

- ``res-multistep``  RES (Zhang, Song, Chen 2023, arXiv:2308.02157): the second-order multistep
  exponential integrator whose coefficients b1 = phi_1 - phi_2 / c2, b2 = phi_2 / c2 satisfy the
  order conditions (DPM-Solver++(2M)'s midpoint weights do not).  ``res-multistep-a`` steps to
  sigma_down and adds ancestral noise; as ComfyUI does, the previous value's offset c2 h is measured
  from the previous sigma to where that step's deterministic part landed.
- ``dpm++sde``  DPM-Solver++ single-step SDE (Lu et al. 2022, arXiv:2211.01095; k-diffusion's
  sample_dpmpp_sde with r = 1/2): two ancestral sub-steps per step, the second with the midpoint
  combination of the two x0 values.
- ``seeds-2``, ``seeds-3``, ``exp-heun-2-x0``, ``exp-heun-2-x0-sde``  SEEDS (Gonzalez et al. 2023,
  arXiv:2305.14267): stages at lambda_s + r_j h whose noise is one Brownian path, each stage's noise
  the previous one decayed plus a fresh increment, so the step's total noise has the exact SDE
  variance.  Exponential Heun is the two-stage scheme with r = 1 (its SDE form draws once per step).
"""
from __future__ import annotations

import math

import torch

from .core import Eval, Option, add_options, alias
from .expint import combine, data_step, lam_of
from .karras import ANCESTRAL, _register, ancestral_step, c_in, finish, model_time, two_stage_nfe
from .model_wrapper import cfg_pp_start

add_options(
    Option("r", 0.5, "where the two-stage single-step methods evaluate inside a step, as a fraction of it "
           "in lambda", float, low=0.01, high=1.0),
    Option("stage_rule", "midpoint", "how a two-stage step weighs its second value: 'midpoint' (DPM-Solver-2, "
           "SEEDS' phi_1 form) or 'taylor' (the phi_2 weight: exponential Heun, SEEDS' phi_2 form)", str,
           ("midpoint", "taylor")),
)


def noise(rng, x, k, k_next, std):
    return rng.randn_like(x, sigma=k, sigma_next=k_next) * std


# --------------------------------------------------------------------------------------------
def res_program(sampler, x, rng):
    p = sampler.plan
    eta, s_noise, pp = sampler.opt("eta"), sampler.opt("s_noise"), sampler.opt("cfg_pp")
    x = x * p.init
    old = None   # the previous step's model value (the unconditional one with CFG++)
    for i in range(p.steps):
        k, down = p.ks[i], p.down[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k, uncond=pp)
        start = cfg_pp_start(x, pred, pp)
        if old is None or down == 0:
            offsets, values = (0.0,), (pred.x0,)
        else:
            offsets, values = (0.0, lam_of(p.ks[i - 1]) - lam_of(p.down[i - 1])), (pred.x0, old)
        decay, coefs, _ = data_step(k, down, offsets)
        x = combine(start, decay, coefs, values)
        if eta > 0 and p.ks[i + 1] > 0:
            x = x + noise(rng, x, k, p.ks[i + 1], p.up[i] * s_noise)
        old = pred.uncond_x0 if pp else pred.x0
    return finish(x, p.ks[-1])


def dpmpp_sde_program(sampler, x, rng):
    p = sampler.plan
    eta, s_noise, r = sampler.opt("eta"), sampler.opt("s_noise"), 0.5
    x = x * p.init
    for i in range(p.steps):
        k, k_next = p.ks[i], p.ks[i + 1]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        if k_next == 0:   # Euler to sigma 0 lands on the predicted x0
            x = pred.x0
            continue
        k_s = k ** (1 - r) * k_next ** r   # lambda_s = lambda + r h
        down, up = ancestral_step(k, k_s, eta)
        x_2 = torch.lerp(pred.x0, x, down / k)
        if up > 0:
            x_2 = x_2 + noise(rng, x, k, k_s, up * s_noise)
        pred_2 = yield Eval(x_2 * c_in(k_s), model_time(sampler, k_s), k_s)
        down, up = ancestral_step(k, k_next, eta)
        x = torch.lerp(torch.lerp(pred.x0, pred_2.x0, 1 / (2 * r)), x, down / k)
        if up > 0:
            x = x + noise(rng, x, k, k_next, up * s_noise)
    return finish(x, p.ks[-1])


# --------------------------------------------------------------------------------------------
def seeds_stages(sampler) -> tuple:
    """Per stage (r_j, the earlier stages whose values it combines, rule); the last stage is the step."""
    if sampler.method.name == "seeds-3":
        return ((1 / 3, (0,), "taylor"), (2 / 3, (0, 1), "taylor"), (1.0, (0, 2), "taylor"))
    r = sampler.opt("r")
    return ((r, (0,), "taylor"), (1.0, (0, 1), sampler.opt("stage_rule")))


def seeds_nfe(sampler) -> int:
    return sampler.plan.steps + (len(seeds_stages(sampler)) - 1) * sum(1 for k in sampler.plan.ks[1:] if k > 0)


def seeds_program(sampler, x, rng):
    p = sampler.plan
    eta, s_noise = sampler.opt("eta"), sampler.opt("s_noise")
    stages = seeds_stages(sampler)
    x = x * p.init
    for i in range(p.steps):
        k, k_next = p.ks[i], p.ks[i + 1]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        if k_next == 0:
            x = pred.x0
            continue
        lam, h = lam_of(k), lam_of(k_next) - lam_of(k)
        values, path, r_done, k_done = [pred.x0], 0.0, 0.0, k
        for j, (r, nodes, rule) in enumerate(stages):
            k_r = math.exp(-(lam + r * h))
            decay, coefs, std = data_step(k, k_r, [stages[n - 1][0] * h if n else 0.0 for n in nodes], eta, rule)
            x_r = combine(x, decay, coefs, [values[n] for n in nodes])
            if eta > 0 and r > r_done:
                # the Brownian path so far, decayed to lambda_s + r h, plus its new increment
                seg = (r_done - r) * h * eta
                path = path * math.exp(seg) + noise(rng, x, k_done, k_r, math.sqrt(-math.expm1(2 * seg)))
                r_done, k_done = r, k_r
            if eta > 0:
                x_r = x_r + path * (k_r * s_noise)
            if j == len(stages) - 1:
                x = x_r
            else:
                pred_r = yield Eval(x_r * c_in(k_r), model_time(sampler, k_r), k_r)
                values.append(pred_r.x0)
    return finish(x, p.ks[-1])


# --------------------------------------------------------------------------------------------
STOCHASTIC_NOTE = "stochastic: the order is that of its eta = 0 path ({base}); with eta > 0 it samples the reverse SDE"
RES_PAPER = "Zhang, Song, Chen 2023, RES (arXiv:2308.02157)"
SEEDS_PAPER = "Gonzalez, Fernandez, Garcia, Mehrotra, Mavroeidis 2023, SEEDS (arXiv:2305.14267)"

_register("res-multistep", "RES multistep (2nd order exponential)", 2, False, res_program, ANCESTRAL + ("cfg_pp",),
          defaults={"eta": 0.0}, paper=RES_PAPER,
          order_note="deterministic by default (eta = 0); eta > 0 is res-multistep-a")
alias("res-multistep", "res-multistep-a", "RES multistep ancestral", stochastic=True, defaults={"eta": 1.0},
      order_note=STOCHASTIC_NOTE.format(base="RES multistep"))
alias("res-multistep", "res-multistep-cfg++", "RES multistep CFG++", defaults={"cfg_pp": True})
alias("res-multistep-a", "res-multistep-a-cfg++", "RES multistep ancestral CFG++", defaults={"cfg_pp": True})
_register("dpm++sde", "DPM-Solver++ SDE (single-step, k-diffusion)", 2, True, dpmpp_sde_program, ANCESTRAL,
          nfe=two_stage_nfe, defaults={"eta": 1.0},
          paper="Lu et al. 2022, DPM-Solver++ (arXiv:2211.01095); k-diffusion sample_dpmpp_sde",
          order_note=STOCHASTIC_NOTE.format(base="DPM-Solver++(2S) with r = 1/2"))
_register("seeds-2", "SEEDS-2", 2, True, seeds_program, ANCESTRAL + ("r", "stage_rule"), nfe=seeds_nfe,
          defaults={"eta": 1.0, "r": 0.5, "stage_rule": "midpoint"}, paper=SEEDS_PAPER,
          order_note=STOCHASTIC_NOTE.format(base="DPM-Solver++(2S)"))
_register("seeds-3", "SEEDS-3", 3, True, seeds_program, ANCESTRAL, nfe=seeds_nfe, defaults={"eta": 1.0},
          paper=SEEDS_PAPER, order_note=STOCHASTIC_NOTE.format(base="DPM-Solver++(3S), r = 1/3, 2/3"))
alias("seeds-2", "exp-heun-2-x0", "Exponential Heun 2 (x0)", stochastic=False,
      defaults={"eta": 0.0, "r": 1.0, "stage_rule": "taylor"},
      order_note="deterministic by default (eta = 0); eta > 0 is exp-heun-2-x0-sde")
alias("seeds-2", "exp-heun-2-x0-sde", "Exponential Heun 2 (x0) SDE", defaults={"r": 1.0, "stage_rule": "taylor"},
      order_note=STOCHASTIC_NOTE.format(base="exp-heun-2-x0"))
