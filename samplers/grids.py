"""Timestep grids: where the model is evaluated.

A grid is N evaluation points plus the end point, each with the model time ``t`` fed to the
network and the noise level ``sigma`` (k-diffusion sigma = sigma_t / alpha_t) the solver uses.
Usually ``t`` and ``sigma`` agree through the schedule; diffusers' DPM-Solver family rounds
``t`` while keeping the exact sigma, and ``round_timesteps=True`` reproduces that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import NoiseSchedule
from .schedules import SIGMA_SPACINGS, TIMESTEP_SPACINGS, sigma_schedule, timestep_schedule

SPACINGS = ("leading", "linspace", "trailing", "karras", "logsnr", "quadratic", "custom") + SIGMA_SPACINGS \
    + TIMESTEP_SPACINGS
# spacings placed in sigma (the model time follows from sigma; round_timesteps applies)
CONTINUOUS_SPACINGS = ("karras", "logsnr") + SIGMA_SPACINGS
# defaults of the named schedules' shape options (the Option declarations in core say the same)
SCHEDULE_DEFAULTS = dict(beta_alpha=0.6, beta_beta=0.6, beta_d=19.9, beta_min=0.1, eps_s=1e-3, laplace_mu=0.0,
                         laplace_beta=0.5)
RHO_DEFAULTS = {"karras": 7.0, "polyexponential": 1.0}
FINAL_SIGMAS = ("zero", "sigma_min")


@dataclass(frozen=True)
class Grid:
    t: np.ndarray       # float64, N + 1: model time of each evaluation point, then the end point
    sigma: np.ndarray   # float64, N + 1: k-sigma at each point; the end is 0 (clean) or sigma_min

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    def __post_init__(self):
        if len(self.t) != len(self.sigma) or len(self.t) < 2:
            raise ValueError("a grid needs matching t and sigma arrays of at least 2 points")


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps={steps!r} must be an integer >= 1")
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    return int(steps)


def spaced_timesteps(spacing: str, steps: int, num_train_timesteps: int, *, steps_offset: int = 0,
                     family: str = "ddim", integer: bool = True) -> np.ndarray:
    """diffusers' timestep tables (as its DDIM / DPMSolverMultistep schedulers build them), descending.

    ``family="ddim"`` is the N-point table of DDIM/DDPM/PNDM/Euler; ``family="dpm"`` is the
    (N+1)-point table with the last point dropped, used by DPM-Solver, UniPC and DEIS.
    ``integer=False`` keeps linspace unrounded (diffusers' Euler family).
    """
    n, T = _check_steps(steps), num_train_timesteps
    if family not in ("ddim", "dpm"):
        raise ValueError(f"family={family!r}; allowed: ddim, dpm")
    if spacing == "trailing":
        if n > T:
            raise ValueError(f"steps={n} with spacing='trailing' exceeds num_train_timesteps={T}")
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    elif spacing == "linspace":
        m = n if family == "ddim" else n + 1
        ts = np.linspace(0, T - 1, m)
        if integer:
            ts = ts.round()
        ts = ts[::-1]
        if family == "dpm":
            ts = ts[:-1]
    elif spacing == "leading":
        m = n if family == "ddim" else n + 1
        ratio = T // m
        if ratio == 0:
            raise ValueError(f"steps={n} with spacing='leading' needs at most {T if family == 'ddim' else T - 1} steps")
        ts = (np.arange(m) * ratio)[::-1].astype(np.float64)
        if family == "dpm":
            ts = ts[:-1]
        ts = ts + steps_offset
        if ts[0] > T - 1:
            raise ValueError(
                f"steps_offset={steps_offset} with steps={n} and spacing='leading' puts the first timestep at "
                f"{int(ts[0])}, past the last train step {T - 1}; use steps_offset=0, fewer steps or another spacing")
    else:
        raise ValueError(f"spacing={spacing!r} is not a timestep table; allowed: leading, linspace, trailing")
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    if len(np.unique(ts)) != len(ts):
        raise ValueError(f"steps={n} is too many for spacing={spacing!r}: timesteps would repeat "
                         f"(at most {T - 1 if family == 'dpm' else T})")
    return ts


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (EDM) eq. 5: N noise levels, uniform in sigma^(1/rho), descending."""
    ramp = np.linspace(0, 1, _check_steps(steps))
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def logsnr_sigmas(steps: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """N noise levels uniform in log sigma, i.e. uniform in lambda (half log-SNR)."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), _check_steps(steps)))


def quadratic_timesteps(steps: int, num_train_timesteps: int) -> np.ndarray:
    """DDIM paper's "quad" selection t_i = (i sqrt(0.8 T) / (N-1))^2, descending.

    The paper truncates to integers, which repeats timesteps near t = 0 for N >~ 30; we keep the
    fractional values so every point is distinct.
    """
    n = _check_steps(steps)
    return (np.linspace(0, np.sqrt(0.8 * num_train_timesteps), n) ** 2)[::-1].astype(np.float64)


def custom_timesteps(timesteps, num_train_timesteps: int) -> np.ndarray:
    try:
        ts = np.asarray([float(v) for v in timesteps], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"timesteps={timesteps!r} must be a list of numbers") from None
    if len(ts) < 1 or not np.all(np.isfinite(ts)):
        raise ValueError(f"timesteps={timesteps!r} must be a non-empty list of finite numbers")
    if np.any(np.diff(ts) >= 0):
        raise ValueError(f"timesteps={list(ts)} must be strictly descending (no repeats)")
    if ts[0] > num_train_timesteps - 1 or ts[-1] < 0:
        raise ValueError(f"timesteps={list(ts)} must lie in [0, {num_train_timesteps - 1}]")
    return ts


def build_grid(schedule: NoiseSchedule, steps: int, spacing: str = "leading", *, family: str = "ddim",
               steps_offset: int = 0, rho: float | None = None, sigma_min: float | None = None,
               sigma_max: float | None = None, timesteps=None, final: str = "zero",
               round_timesteps: bool = False, interpolation: str = "log",
               integer_linspace: bool = True, shape: dict | None = None) -> Grid:
    """The evaluation points for ``steps`` steps and the end point (``final``: zero or sigma_min).

    ``rho`` None: 7 for karras, 1 for polyexponential; ``shape``: the named schedules' options
    (``SCHEDULE_DEFAULTS`` where missing)."""
    T = schedule.num_train_timesteps
    if rho is None:
        rho = RHO_DEFAULTS.get(spacing, 7.0)
    shape = dict(SCHEDULE_DEFAULTS, **{k: v for k, v in (shape or {}).items() if v is not None}, rho=rho)
    if final not in FINAL_SIGMAS:
        raise ValueError(f"final_sigmas_type={final!r}; allowed: {', '.join(FINAL_SIGMAS)}")
    if spacing == "custom" or timesteps is not None:
        if timesteps is None:
            raise ValueError("spacing='custom' needs timesteps=[...] (descending train timesteps)")
        ts = custom_timesteps(timesteps, T)
        sig = schedule.sigma_at(ts, interpolation)
    elif spacing in ("leading", "linspace", "trailing"):
        ts = spaced_timesteps(spacing, steps, T, steps_offset=steps_offset, family=family,
                              integer=integer_linspace)
        sig = schedule.sigma_at(ts, interpolation)
    elif spacing == "quadratic":
        ts = quadratic_timesteps(steps, T)
        sig = schedule.sigma_at(ts, interpolation)
    elif spacing in TIMESTEP_SPACINGS:
        ts = timestep_schedule(spacing, _check_steps(steps), T, shape)
        sig = schedule.sigma_at(ts, "log")
    elif spacing in CONTINUOUS_SPACINGS:
        lo = schedule.sigma_min if sigma_min is None else float(sigma_min)
        hi = schedule.sigma_max if sigma_max is None else float(sigma_max)
        if not (0 < lo < hi and np.isfinite(hi)):
            raise ValueError(f"sigma_min={lo!r}, sigma_max={hi!r}: need 0 < sigma_min < sigma_max < inf")
        if spacing == "karras":
            if not (isinstance(rho, (int, float)) and 0 < rho <= 100):
                raise ValueError(f"rho={rho!r} must be a number in (0, 100]")
            sig = karras_sigmas(steps, lo, hi, rho)
        elif spacing == "logsnr":
            sig = logsnr_sigmas(steps, lo, hi)
        else:
            sig = sigma_schedule(spacing, _check_steps(steps), lo, hi, shape)
        ts = schedule.t_of_sigma(sig)
        if round_timesteps:
            ts = np.round(ts)
    else:
        raise ValueError(f"spacing={spacing!r} is not supported; allowed: {', '.join(SPACINGS)}")
    if np.any(np.diff(sig) >= 0):
        raise ValueError(f"spacing={spacing!r} with steps={steps} repeats or raises a noise level (sigmas "
                         f"{np.round(sig, 4).tolist()[:12]}...): use fewer steps or other schedule options")
    end_sigma = 0.0 if final == "zero" else schedule.sigma_min
    if end_sigma > sig[-1] * (1 + 1e-9):  # a grid ending at sigma_min up to rounding is fine
        raise ValueError(f"the grid already ends at sigma={sig[-1]:.4g} (t={ts[-1]:g}); final_sigmas_type="
                         f"{final!r} would not be a further step")
    return Grid(t=np.append(ts, 0.0), sigma=np.append(sig, end_sigma))
