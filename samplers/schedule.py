"""The noise schedule: one place for alpha, sigma and lambda of the discrete VP process.

x_t = alpha_t x0 + sigma_t eps with alpha_t^2 = alphas_cumprod[t], sigma_t^2 = 1 - alpha_t^2.
The k-diffusion / EDM noise level ``k = sigma_t / alpha_t`` is the coordinate we interpolate
in; lambda = log(alpha_t / sigma_t) = -log(k) is the half log-SNR the exponential
integrators step in.  All schedule math is float64.
"""
from __future__ import annotations

import math

import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

# diffusers clamps the zero-SNR end to this alphas_cumprod so eps-based formulas stay finite.
ZERO_SNR_CLAMP = 2.0**-24


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, betas capped at ``max_beta``."""
    def abar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return np.array([min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)])


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2023, Algorithm 1: shift and scale sqrt(abar) so its last value is 0."""
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    abar = root**2
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


def make_betas(beta_schedule: str = "linear", num_train_timesteps: int = 1000,
               beta_start: float = 0.0001, beta_end: float = 0.02,
               trained_betas=None) -> np.ndarray:
    if trained_betas is not None:
        betas = np.asarray(trained_betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) < 2 or not np.all((betas > 0) & (betas < 1)):
            raise ValueError("trained_betas must be a 1-D list of at least 2 values in (0, 1)")
        return betas
    if not isinstance(num_train_timesteps, (int, np.integer)) or num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps={num_train_timesteps!r}: must be an integer >= 2")
    n = int(num_train_timesteps)
    # diffusers builds betas in float32; doing the same keeps our alphas_cumprod bit-close to theirs.
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float32)
    elif beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        betas = cosine_betas(n).astype(np.float32)
    else:
        raise ValueError(f"beta_schedule={beta_schedule!r} is not supported; allowed: {', '.join(BETA_SCHEDULES)}")
    return betas.astype(np.float64)


def vp_coefficients(k: float) -> tuple[float, float]:
    """(alpha, sigma) of the VP process at k-diffusion noise level ``k`` (inf = pure noise)."""
    if math.isinf(k):
        return 0.0, 1.0
    alpha = 1.0 / math.sqrt(1.0 + k * k)
    return alpha, k * alpha


class NoiseSchedule:
    """Discrete-time VP schedule with values at fractional timesteps.

    Between integer timesteps, log(k) is interpolated linearly in t, so ``t_of_sigma`` is its
    exact inverse (the same interpolation diffusers uses to map a sigma back to a timestep).
    """

    def __init__(self, betas, rescale_zero_snr: bool = False):
        betas = np.asarray(betas, dtype=np.float64)
        if rescale_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.rescaled_zero_snr = bool(rescale_zero_snr)
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.num_train_timesteps = len(betas)
        with np.errstate(divide="ignore"):
            self.sigmas = np.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)  # k per train step
        # Interpolation table: only an exact zero-SNR end (k = inf) is clamped, as diffusers does;
        # tiny but positive values (the cosine schedule's end) are kept.
        ac = np.where(self.alphas_cumprod > 0, self.alphas_cumprod, ZERO_SNR_CLAMP)
        self.log_sigmas = 0.5 * np.log((1.0 - ac) / ac)

    @classmethod
    def from_config(cls, config: dict | None = None, **overrides) -> "NoiseSchedule":
        cfg = dict(config or {})
        cfg.update(overrides)
        betas = make_betas(cfg.get("beta_schedule", "linear"), cfg.get("num_train_timesteps", 1000),
                           cfg.get("beta_start", 0.0001), cfg.get("beta_end", 0.02),
                           cfg.get("trained_betas"))
        return cls(betas, rescale_zero_snr=bool(cfg.get("rescale_betas_zero_snr", False)))

    @property
    def finite_sigmas(self) -> np.ndarray:
        """k per train step with a zero-SNR end (k = inf) clamped as diffusers does."""
        return np.exp(self.log_sigmas)

    def clamp_sigma(self, sigma) -> np.ndarray:
        """Noise levels with k = inf (zero terminal SNR) replaced by the clamped sigma_max."""
        sigma = np.asarray(sigma, dtype=np.float64)
        return np.where(np.isinf(sigma), self.sigma_max, sigma)

    # --- noise level at a timestep and back -------------------------------------------------
    def sigma_at(self, t, interpolation: str = "log") -> np.ndarray:
        """k-sigma at (possibly fractional) timesteps ``t``.

        ``interpolation="linear"`` interpolates k itself (diffusers' Euler family default).
        Integer timesteps give the table value exactly (inf at a zero-SNR end).
        """
        t = np.asarray(t, dtype=np.float64)
        if np.any(t < 0) or np.any(t > self.num_train_timesteps - 1):
            raise ValueError(f"timestep out of range [0, {self.num_train_timesteps - 1}]: {t}")
        grid = np.arange(self.num_train_timesteps, dtype=np.float64)
        if interpolation == "log":
            out = np.exp(np.interp(t, grid, self.log_sigmas))
        elif interpolation == "linear":
            out = np.interp(t, grid, np.exp(self.log_sigmas))
        else:
            raise ValueError(f"interpolation={interpolation!r}; allowed: log, linear")
        exact = t == np.round(t)
        out = np.where(exact, self.sigmas[np.clip(np.round(t).astype(int), 0, None)], out)
        return out

    def t_of_sigma(self, sigma) -> np.ndarray:
        """Fractional timestep whose k-sigma is ``sigma`` (log-k interpolation, clipped to range)."""
        log_sigma = np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10))
        return np.interp(log_sigma, self.log_sigmas, np.arange(self.num_train_timesteps, dtype=np.float64))

    def lambda_at(self, t) -> np.ndarray:
        return -np.log(self.sigma_at(t))

    def t_of_lambda(self, lam) -> np.ndarray:
        return self.t_of_sigma(np.exp(-np.asarray(lam, dtype=np.float64)))

    def alpha_sigma_at(self, t) -> tuple[np.ndarray, np.ndarray]:
        """VP (alpha_t, sigma_t) at timesteps t."""
        k = self.sigma_at(t)
        alpha = 1.0 / np.sqrt(1.0 + np.where(np.isinf(k), 0.0, k) ** 2)
        alpha = np.where(np.isinf(k), 0.0, alpha)
        sigma = np.where(np.isinf(k), 1.0, k * alpha)
        return alpha, sigma

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(np.exp(self.log_sigmas[-1]))

    def __repr__(self):
        return (f"NoiseSchedule(T={self.num_train_timesteps}, sigma_min={self.sigma_min:.4g}, "
                f"sigma_max={self.sigmas[-1]:.4g}, zero_snr={self.rescaled_zero_snr})")
