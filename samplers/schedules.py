"""The named schedules people arrive with (k-diffusion, ComfyUI, A1111/Forge), as grid spacings.

Each function gives the N evaluation points (the end point, 0 or sigma_min, is added by
``build_grid``). Two kinds:

- defined in sigma (``SIGMA_SPACINGS``): the model time is the fractional train timestep of each
  sigma (``t_of_sigma``); ``round_timesteps`` rounds it as for karras / logsnr;
- defined in train timesteps (``TIMESTEP_SPACINGS``): sigma is the schedule's sigma at t
  (log-sigma interpolation between train steps, as ComfyUI's discrete model sampling does).

Definitions (our code, from the published formulas and the projects' documented behaviour):

- exponential: uniform in log sigma (k-diffusion ``get_sigmas_exponential``; the same as logsnr).
- polyexponential: log sigma = log lo + ramp^rho (log hi - log lo), ramp from 1 to 0 (k-diffusion).
- kl_optimal: sigma = tan((1 - u) atan(hi) + u atan(lo)), u from 0 to 1 (Sabour, Fidler, Kreis 2024,
  "Align Your Steps", arXiv:2404.14507: the KL-optimal schedule; ComfyUI's kl_optimal).
- laplace: lambda = mu - beta sign(1/2 - u) log(1 - 2|1/2 - u| + 1e-5), sigma = exp(lambda) clipped to
  [lo, hi] (Hang, Gu et al. 2024, arXiv:2407.03297; ComfyUI's Laplace node, mu 0, beta 0.5).
- vp: sigma(s) = sqrt(exp(beta_d s^2 / 2 + beta_min s) - 1), s from 1 to eps_s (Song et al. 2021,
  arXiv:2011.13456; k-diffusion ``get_sigmas_vp``); its own continuous schedule, so it ignores
  sigma_min / sigma_max.
- simple: every (T/N)-th train step from the top, t_i = T-1 - floor(i T/N) (ComfyUI's simple).
- normal: t uniform from T-1 to 0, N points (ComfyUI's normal; A1111's Uniform).
- sgm_uniform: N+1 points uniform from T-1 to 0, the last dropped (ComfyUI / A1111's SGM Uniform).
- ddim_uniform: every c-th train step from t = 1, c = T // N (ComfyUI's ddim_uniform). ComfyUI keeps
  counting while t < T, which for some N (7, 30, ...) gives N+1 points; we keep the top N.
- beta: t_i = rint((T-1) F^-1(1 - i/N)) with F the Beta(beta_alpha, beta_beta) CDF (Lee et al. 2024,
  "Beta Sampling is All You Need", arXiv:2407.12173; ComfyUI's beta, default 0.6 / 0.6).
- linear_quadratic: the fraction 1 - s_i of the schedule, s linear up to 0.025 over the first N//2
  steps then quadratic to 1 (Genmo's Mochi schedule; ComfyUI's linear_quadratic). ComfyUI scales
  the fraction by sigma_max, i.e. by the time of a flow model (sigma = t); on our VP models we apply
  it to the train time, t_i = (1 - s_i)(T-1).
- turbo: the last train step of the first N of 10 equal blocks, 999, 899, ... (ComfyUI's SDTurbo
  scheduler for SD-Turbo; N <= 10). A1111's "Turbo" is round(k T/N) - 1, which is ``trailing``.
"""
from __future__ import annotations

import math

import numpy as np

SIGMA_SPACINGS = ("exponential", "polyexponential", "kl_optimal", "laplace", "vp")
TIMESTEP_SPACINGS = ("simple", "normal", "sgm_uniform", "ddim_uniform", "beta", "linear_quadratic", "turbo")
LAPLACE_EPS = 1e-5      # keeps log(0) out of the Laplace quantile at the ends
TURBO_BLOCKS = 10


def sigma_schedule(spacing: str, n: int, lo: float, hi: float, o: dict) -> np.ndarray:
    """N sigmas of a sigma-defined spacing between lo and hi (vp: its own range)."""
    if spacing == "exponential":
        return np.exp(np.linspace(math.log(hi), math.log(lo), n))
    if spacing == "polyexponential":
        ramp = np.linspace(1, 0, n) ** o["rho"]
        return np.exp(ramp * (math.log(hi) - math.log(lo)) + math.log(lo))
    if spacing == "kl_optimal":
        u = np.linspace(0, 1, n)
        return np.tan((1 - u) * math.atan(hi) + u * math.atan(lo))
    if spacing == "laplace":
        u = np.linspace(0, 1, n)
        lam = o["laplace_mu"] - o["laplace_beta"] * np.sign(0.5 - u) * np.log(1 - 2 * np.abs(0.5 - u) + LAPLACE_EPS)
        return np.clip(np.exp(lam), lo, hi)
    if spacing == "vp":
        s = np.linspace(1, o["eps_s"], n)
        return np.sqrt(np.expm1(o["beta_d"] * s * s / 2 + o["beta_min"] * s))
    raise ValueError(f"spacing={spacing!r} is not a sigma schedule")


def timestep_schedule(spacing: str, n: int, T: int, o: dict) -> np.ndarray:
    """N descending train timesteps (fractional where the definition is) of a timestep spacing."""
    if spacing == "simple":
        ss = T / n
        return np.array([T - 1 - int(i * ss) for i in range(n)], dtype=np.float64)
    if spacing == "normal":
        return np.linspace(T - 1, 0, n)
    if spacing == "sgm_uniform":
        return np.linspace(T - 1, 0, n + 1)[:-1]
    if spacing == "ddim_uniform":
        c = max(T // n, 1)
        ts = np.arange(1, T, c, dtype=np.float64)[::-1][:n]
        if len(ts) < n:
            raise ValueError(f"steps={n} is too many for spacing='ddim_uniform' (at most {T - 1})")
        return ts
    if spacing == "beta":
        u = 1 - np.linspace(0, 1, n, endpoint=False)
        return np.rint(beta_ppf(u, o["beta_alpha"], o["beta_beta"]) * (T - 1))
    if spacing == "linear_quadratic":
        return (1 - linear_quadratic_fractions(n)) * (T - 1)
    if spacing == "turbo":
        if n > TURBO_BLOCKS:
            raise ValueError(f"steps={n} is too many for spacing='turbo' (SD-Turbo's {TURBO_BLOCKS} timesteps; "
                             f"allowed: 1 <= steps <= {TURBO_BLOCKS})")
        return np.round((TURBO_BLOCKS - np.arange(n)) * T / TURBO_BLOCKS) - 1
    raise ValueError(f"spacing={spacing!r} is not a timestep schedule")


def linear_quadratic_fractions(n: int, threshold: float = 0.025, linear_steps: int | None = None) -> np.ndarray:
    """s_0..s_{N-1} of the linear-then-quadratic schedule (s_N = 1 is the end)."""
    if n == 1:
        return np.zeros(1)
    m = n // 2 if linear_steps is None else linear_steps
    linear = [i * threshold / m for i in range(m)]
    q = n - m
    diff = m - threshold * n
    quad_coef = diff / (m * q * q)
    lin_coef = threshold / m - 2 * diff / (q * q)
    const = quad_coef * m * m
    quad = [quad_coef * i * i + lin_coef * i + const for i in range(m, n)]
    return np.array(linear + quad, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The Beta distribution's inverse CDF (scipy is test-only here).
def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):   # the fraction converges fast only below the mean: use symmetry
        return 1.0 - beta_cdf(1 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a


def beta_ppf(u, a: float, b: float) -> np.ndarray:
    """F^-1(u) of Beta(a, b) by bisection on the CDF (monotone; 100 halvings reach float64 spacing)."""
    out = []
    for target in np.atleast_1d(np.asarray(u, dtype=np.float64)):
        if target <= 0 or target >= 1:
            out.append(float(np.clip(target, 0, 1)))
            continue
        left, right = 0.0, 1.0
        for _ in range(100):
            mid = 0.5 * (left + right)
            if beta_cdf(mid, a, b) < target:
                left = mid
            else:
                right = mid
        out.append(0.5 * (left + right))
    return np.array(out)
