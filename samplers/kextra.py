"""More samplers in k form (x = x0 + k eps) on the k-diffusion grids, as ComfyUI offers them.

- ``heunpp2``  Heun++ (sd-webui-samplers-scheduler): each step averages the slopes at its start
  and at the next one or two grid points (Euler predictions), weighted by sigma / (n sigma_max),
  so at small sigma it is almost Euler.
- ``gradient-estimation``  Permenter & Yuan 2024 (arXiv:2306.04848): the denoiser's error is
  estimated from two consecutive slopes, d_bar = gamma d + (1 - gamma) d_prev (gamma = 2).
- ``ipndm-v``  variable-step iPNDM (Zhang & Chen 2023; the variable-step form of Zhou et al.'s
  diff-sampler): Adams-Bashforth on the slope d = eps in sigma with the weights of the actual
  steps, so it keeps its order on uneven grids; the last step to sigma 0 returns the x0.  The
  weights are LMS's (both integrate the Lagrange basis in sigma); only that last step differs.
- ``lcm``  latent-consistency sampling (Luo et al. 2023, arXiv:2310.04378): jump to the x0, then
  re-noise it to the next sigma with fresh noise.
- ``ddpm-k``  DDPM ancestral sampling (Ho et al. 2020) on the k-diffusion sigmas (ComfyUI's ddpm).
- CFG++ forms (Chung et al. 2024, arXiv:2406.08070) of euler, euler-a, dpm++2s-a and
  gradient-estimation.
"""
from __future__ import annotations

from .core import REGISTRY, Eval, Option, add_options, alias
from .ddpm import ddpm_program
from .karras import _register, finish, lms_coefficients
from .model_wrapper import cfg_pp_start

add_options(Option("ge_gamma", 2.0, "gradient estimation: weight of the newest slope (1 = Euler)", float,
                   low=0.0, high=10.0))

CHURN = ("s_churn", "s_tmin", "s_tmax", "s_noise")
CFG_PP_PAPER = "Chung, Kim, Park, Nam, Ye 2024, CFG++ (arXiv:2406.08070)"


def heunpp2_nfe(s) -> int:
    ks = s.plan.ks
    return sum(1 + (ks[i + 1] != ks[-1]) + (i + 2 < len(ks) and ks[i + 1] != ks[-1] and ks[i + 2] != ks[-1])
               for i in range(s.plan.steps))


def heunpp2_program(sampler, x, rng):
    p = sampler.plan
    ks, end, top, s_noise = p.ks, p.ks[-1], p.ks[0], sampler.opt("s_noise")
    x = x * p.init
    for i in range(p.steps):
        k, k_hat = ks[i], p.k_hat[i]
        if k_hat > k:   # Karras churn: a fresh draw, not a Brownian increment ([k, k_hat] overlaps the step above)
            x = x + rng.randn_like(x) * (s_noise * (k_hat * k_hat - k * k) ** 0.5)
        pred = yield Eval(x * (1 + k_hat * k_hat) ** -0.5, p.k_hat_t[i], k_hat)
        slopes, dt, trial = [pred.eps], ks[i + 1] - k_hat, x
        # predict along the grid to the next one or two points (not to the end) and collect their slopes
        for j in range(i + 1, min(i + 3, p.steps + 1)):
            if ks[j] == end:
                break
            trial = trial + slopes[-1] * ((ks[j] - (k_hat if j == i + 1 else ks[j - 1])))
            pred = yield Eval(trial * p.c_in[j], p.model_t[j], ks[j], extra={"step": i + 1})
            slopes.append(pred.eps)
        n = len(slopes)
        weights = [ks[i + j] / (n * top) for j in range(1, n)]
        d = slopes[0] * (1 - sum(weights))
        for w, s in zip(weights, slopes[1:]):
            d = d + s * w
        x = x + d * dt
    return finish(x, end)


def gradient_estimation_program(sampler, x, rng):
    p = sampler.plan
    gamma, pp = sampler.opt("ge_gamma"), sampler.opt("cfg_pp")
    x = x * p.init
    old = None
    for i in range(p.steps):
        k, dt = p.ks[i], p.ks[i + 1] - p.ks[i]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k, uncond=pp)
        x = cfg_pp_start(x, pred, pp)
        d = pred.uncond_eps if pp else pred.eps
        x = x + d * dt if old is None else x + (d * gamma + old * (1 - gamma)) * dt
        old = d
    return finish(x, p.ks[-1])


def ipndm_v_program(sampler, x, rng):
    p = sampler.plan
    weights = lms_coefficients(p.ks, 4)
    x = x * p.init
    history = []
    for i in range(p.steps):
        pred = yield Eval(x * p.c_in[i], p.model_t[i], p.ks[i])
        history = (history + [pred.eps])[-4:]
        if p.ks[i + 1] == 0:
            x = pred.x0
            continue
        for w, d in zip(weights[i], reversed(history)):
            x = x + d * w
    return finish(x, p.ks[-1])


def lcm_program(sampler, x, rng):
    p = sampler.plan
    x = x * p.init
    for i in range(p.steps):
        pred = yield Eval(x * p.c_in[i], p.model_t[i], p.ks[i])
        x = pred.x0
        if p.ks[i + 1] > 0:
            x = x + rng.randn_like(x, sigma=p.ks[i], sigma_next=p.ks[i + 1]) * p.ks[i + 1]
    return finish(x, p.ks[-1])


def ddpm_k_program(sampler, x, rng):
    # the VP sample at the first sigma, then DDPM's posterior steps on the grid's sigmas
    p = sampler.plan
    return (yield from ddpm_program(sampler, x * (p.init * p.c_in[0]), rng))


NO_ODE = "stochastic: {what}; it has no noise-free path that solves the probability-flow ODE, so no ODE order is claimed"

_register("heunpp2", "Heun++ 2", 1, False, heunpp2_program, CHURN + ("noise",), nfe=heunpp2_nfe,
          paper="Heun++ (sd-webui-samplers-scheduler, Carzit); Karras et al. 2022 (arXiv:2206.00364)",
          order_note="its slope weights sigma / (n sigma_max) vanish as sigma shrinks, so it is first order "
                     "(Euler) on the late steps that decide the error")
_register("gradient-estimation", "Gradient estimation", 1, False, gradient_estimation_program, ("ge_gamma", "cfg_pp"),
          paper="Permenter, Yuan 2024 (arXiv:2306.04848)",
          order_note="gamma = 2 is not the Adams-Bashforth weight (3/2), so its ODE order is 1 (the paper argues "
                     "from the denoiser's error, not the order): its error starts below Euler's and meets it, a "
                     "slope of about 0.5 over NFE 10-50 and 0.95 over NFE 50-400 on Gaussian data")
alias("gradient-estimation", "gradient-estimation-cfg++", "Gradient estimation CFG++", defaults={"cfg_pp": True},
      paper=CFG_PP_PAPER + "; Permenter, Yuan 2024 (arXiv:2306.04848)")
_register("ipndm-v", "iPNDM (variable step)", 3, False, ipndm_v_program, nfe=lambda s: s.plan.steps,
          paper="Zhang, Chen 2023 (arXiv:2204.13902); Zhou et al. 2024 variable-step form (arXiv:2312.00094)",
          nominal_order=4, order_note="4 past slopes with the actual steps' Adams-Bashforth weights in sigma "
          "(LMS's weights); on a log-SNR grid, whose steps in sigma shrink geometrically, it measures about 3")
_register("lcm", "LCM (x0, then re-noise)", None, True, lcm_program, ("noise",),
          paper="Luo et al. 2023 (arXiv:2310.04378)",
          order_note=NO_ODE.format(what="each step jumps to the x0 and re-noises it"))
ddpm = REGISTRY["ddpm"]
_register("ddpm-k", "DDPM (on k-diffusion sigmas)", None, True, ddpm_k_program, ("variance_type", "noise"),
          paper=ddpm.paper,
          order_note=NO_ODE.format(what="samples the reverse SDE (weak order 1)"),
          choices={"variance_type": ("fixed_small", "fixed_large"), "interpolation_type": ("linear", "log")})

# CFG++ forms of the k-diffusion family (their programs read cfg_pp); Euler's CFG++ form is the plain
# Euler step (no churn, discrete model times, so no noise to draw), as ComfyUI's euler_cfg_pp
EULER_ONLY = CHURN + ("churn_rule", "timestep_type", "noise")
for base, title in (("euler", "Euler CFG++"), ("euler-a", "Euler ancestral CFG++"),
                    ("dpm++2s-a", "DPM++ 2S ancestral CFG++")):
    options = tuple(o for o in REGISTRY[base].options if base != "euler" or o not in EULER_ONLY)
    alias(base, base + "-cfg++", title, options=options + ("cfg_pp",), defaults={"cfg_pp": True},
          paper=CFG_PP_PAPER + "; " + REGISTRY[base].paper, diffusers=None)
