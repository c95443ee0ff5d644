"""Models whose right answer is known in closed form (Gaussian posteriors and their probability-flow
maps; Song et al. 2021, arXiv:2011.13456).

Each model is a callable ``model(x, t)`` like a network: ``x`` of shape [batch, *event_shape],
``t`` a (fractional) timestep of its ``scheduler_config`` (scalar or [batch]); it returns the
prediction named by ``scheduler_config["prediction_type"]``. The noise process is
``x_t = alpha_t x0 + sigma_t eps`` with alpha, sigma from ``samplers.schedule.NoiseSchedule``.
All arithmetic happens in the dtype of ``x`` (float64 in, float64 out), except the ideal
denoiser's distances, which are always float64 (they are differences of large numbers).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from samplers.schedule import NoiseSchedule

from .defaults import PREDICTION_TYPES, default_scheduler_config  # noqa: F401  (re-exported)

CLEAN = "clean"


class AnalyticModel:
    """Shared plumbing: the schedule, timestep handling and the output parameterisation."""

    def __init__(self, event_shape, prediction_type: str = "epsilon", scheduler_config: dict | None = None):
        if scheduler_config is None:
            scheduler_config = default_scheduler_config(prediction_type)
        else:
            scheduler_config = {**scheduler_config, "prediction_type": scheduler_config.get("prediction_type",
                                                                                              prediction_type)}
            if scheduler_config["prediction_type"] not in PREDICTION_TYPES:
                raise ValueError(f"scheduler_config prediction_type={scheduler_config['prediction_type']!r}; "
                                 f"allowed: {', '.join(PREDICTION_TYPES)}")
        self.scheduler_config = scheduler_config
        self.schedule = NoiseSchedule.from_config(scheduler_config)
        self.event_shape = tuple(int(n) for n in event_shape)
        self.dim = int(np.prod(self.event_shape))
        self.config = {"_class_name": type(self).__name__, "event_shape": list(self.event_shape)}
        if len(self.event_shape) == 3:
            self.config.update(in_channels=self.event_shape[0], out_channels=self.event_shape[0],
                               sample_size=self.event_shape[1])

    # -- time -----------------------------------------------------------------------------------
    def alpha_sigma(self, t, x: torch.Tensor):
        """(alpha, sigma) at ``t`` as [batch, 1] tensors in x's dtype/device. ``t="clean"``: (1, 0)."""
        batch = x.shape[0]
        if isinstance(t, str):
            if t != CLEAN:
                raise ValueError(f"t={t!r}: a timestep or {CLEAN!r}")
            a = np.ones(batch)
            s = np.zeros(batch)
        else:
            t_np = t.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(t) else np.asarray(t, np.float64)
            t_np = t_np.reshape(-1)
            if t_np.size == 1:
                t_np = np.repeat(t_np, batch)
            if t_np.size != batch:
                raise ValueError(f"t must be a scalar or have {batch} entries, got {t_np.size}")
            a, s = self.schedule.alpha_sigma_at(t_np)
        as_col = lambda v: torch.as_tensor(np.asarray(v, np.float64), dtype=x.dtype, device=x.device).reshape(batch, 1)
        return as_col(a), as_col(s)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape [batch, {', '.join(map(str, self.event_shape))}], got {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        return x.reshape(x.shape[0], self.dim)

    # -- predictions (subclasses give x0 and eps on flat [batch, dim] tensors) -------------------
    def _x0_eps(self, xf, a, s, class_labels=None):
        raise NotImplementedError

    def _no_labels(self, class_labels):
        if class_labels is not None:
            raise ValueError(f"class_labels given but {type(self).__name__} is unconditional")

    def x0(self, x, t, class_labels=None) -> torch.Tensor:
        """E[x0 | x_t = x]."""
        a, s = self.alpha_sigma(t, x)
        return self._x0_eps(self._flat(x), a, s, class_labels)[0].reshape(x.shape)

    def x0_at(self, x, alpha, sigma, class_labels=None) -> torch.Tensor:
        """E[x0 | alpha x0 + sigma eps = x] at any (alpha, sigma), also below the first train step:
        what an exact reference solve needs on its last stretch down to sigma = 0."""
        column = lambda v: torch.full((x.shape[0], 1), float(v), dtype=x.dtype, device=x.device)  # noqa: E731
        return self._x0_eps(self._flat(x), column(alpha), column(sigma), class_labels)[0].reshape(x.shape)

    def eps(self, x, t, class_labels=None) -> torch.Tensor:
        """E[eps | x_t = x] = -sigma_t * score."""
        a, s = self.alpha_sigma(t, x)
        return self._x0_eps(self._flat(x), a, s, class_labels)[1].reshape(x.shape)

    def score(self, x, t, class_labels=None) -> torch.Tensor:
        """grad_x log p_t(x) = -eps / sigma_t."""
        a, s = self.alpha_sigma(t, x)
        return (-self._x0_eps(self._flat(x), a, s, class_labels)[1] / s).reshape(x.shape)

    def __call__(self, x, t, class_labels=None) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x)
        x0, eps = self._x0_eps(self._flat(x), a, s, class_labels)
        kind = self.scheduler_config["prediction_type"]
        out = eps if kind == "epsilon" else x0 if kind == "sample" else a * eps - s * x0
        return out.reshape(x.shape)

    def to(self, device=None, dtype=None):
        """Networks are moved with .to(); analytic models compute on x's device, so this is a no-op."""
        return self

    def eval(self):
        return self


def _as_tensor(value, name) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r} ({exc})") from None


def _covariance(cov, dim: int, name: str):
    """(eigenvectors or None, eigenvalues [dim]) from a scalar, per-dimension variances or a matrix."""
    cov = _as_tensor(cov, name)
    vecs = None
    if cov.numel() == 1:
        lam = cov.reshape(1).expand(dim).clone()
    elif cov.shape == (dim, dim):
        if not torch.allclose(cov, cov.T, atol=1e-12):
            raise ValueError(f"{name} must be symmetric")
        lam, vecs = torch.linalg.eigh(cov)
    elif cov.numel() == dim:
        lam = cov.reshape(dim).clone()
    else:
        raise ValueError(f"{name} must be a scalar, {dim} per-dimension variances or a {dim}x{dim} matrix; "
                         f"got shape {list(cov.shape)}")
    if torch.any(lam < -1e-12):
        raise ValueError(f"{name} must be positive semi-definite (smallest eigenvalue {lam.min().item():.3g})")
    return vecs, lam.clamp(min=0.0)


class GaussianData(AnalyticModel):
    """Data x0 ~ N(mu, Sigma): exact x0/eps predictions and the exact probability-flow map.

    ``cov`` is a scalar, per-dimension variances (shape of mu) or a full [D, D] matrix.
    In Sigma's eigenbasis every formula is a scalar per direction with c_t = a_t^2 lam + s_t^2.
    """

    def __init__(self, mu, cov, prediction_type: str = "epsilon", scheduler_config: dict | None = None):
        mu = _as_tensor(mu, "mu")
        super().__init__(mu.shape if mu.ndim else (1,), prediction_type, scheduler_config)
        self.mu = mu.reshape(self.dim)
        self.vecs, self.lam = _covariance(cov, self.dim, "cov")

    def _rotate(self, v, vecs):
        return v if vecs is None else v @ vecs

    def _unrotate(self, v, vecs):
        return v if vecs is None else v @ vecs.T

    def _params(self, x):
        vecs = None if self.vecs is None else self.vecs.to(x.device, x.dtype)
        return self.mu.to(x.device, x.dtype), vecs, self.lam.to(x.device, x.dtype)

    def _x0_eps(self, xf, a, s, class_labels=None):
        self._no_labels(class_labels)
        mu, vecs, lam = self._params(xf)
        r = self._rotate(xf - a * mu, vecs)
        c = a * a * lam + s * s
        x0 = mu + self._unrotate(a * lam / c * r, vecs)
        eps = self._unrotate(s / c * r, vecs)
        return x0, eps

    def covariance(self) -> torch.Tensor:
        if self.vecs is None:
            return torch.diag(self.lam)
        return self.vecs @ torch.diag(self.lam) @ self.vecs.T

    def flow(self, x, t_from, t_to) -> torch.Tensor:
        """Exact probability-flow ODE map from time ``t_from`` to ``t_to`` (or ``"clean"``):
        Phi(x) = a_to mu + C_to^(1/2) C_from^(-1/2) (x - a_from mu)."""
        xf = self._flat(x)
        mu, vecs, lam = self._params(xf)
        a0, s0 = self.alpha_sigma(t_from, x)
        a1, s1 = self.alpha_sigma(t_to, x)
        ratio = torch.sqrt((a1 * a1 * lam + s1 * s1) / (a0 * a0 * lam + s0 * s0))
        out = a1 * mu + self._unrotate(ratio * self._rotate(xf - a0 * mu, vecs), vecs)
        return out.reshape(x.shape)

    def log_prob(self, x, t) -> torch.Tensor:
        """log p_t(x) with p_t = N(a_t mu, a_t^2 Sigma + s_t^2 I)."""
        xf = self._flat(x)
        mu, vecs, lam = self._params(xf)
        a, s = self.alpha_sigma(t, x)
        c = a * a * lam + s * s
        r = self._rotate(xf - a * mu, vecs)
        return -0.5 * ((r * r / c).sum(1) + torch.log(c).sum(1) + self.dim * math.log(2 * math.pi))

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        """n draws of x0."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x0 = self.mu + self._unrotate(z * self.lam.sqrt(), self.vecs)
        return x0.reshape(n, *self.event_shape).to(dtype)


class GaussianMixture(AnalyticModel):
    """Data x0 ~ sum_k pi_k N(mu_k, Sigma_k): exact posterior mean and noise prediction.

    ``covs``: one entry per component, each a scalar, per-dimension variances or a [D, D]
    matrix (use scalars or variances for image-shaped data).
    """

    def __init__(self, weights, means, covs, prediction_type: str = "epsilon", scheduler_config: dict | None = None):
        means = _as_tensor(means, "means")
        weights = _as_tensor(weights, "weights").reshape(-1)
        if means.ndim < 2 or means.shape[0] != weights.numel():
            raise ValueError(f"means must have shape [K, *event_shape] with K={weights.numel()} (the number of "
                             f"weights); got {list(means.shape)}")
        if torch.any(weights <= 0):
            raise ValueError("weights must all be positive")
        super().__init__(means.shape[1:], prediction_type, scheduler_config)
        k = weights.numel()
        self.log_weights = torch.log(weights / weights.sum())
        self.means = means.reshape(k, self.dim)
        if not isinstance(covs, (list, tuple)):
            covs_t = _as_tensor(covs, "covs")
            covs = [covs_t] * k if covs_t.ndim == 0 else list(covs_t)
        if len(covs) != k:
            raise ValueError(f"covs must have one entry per component ({k}), got {len(covs)}")
        parts = [_covariance(c, self.dim, f"covs[{i}]") for i, c in enumerate(covs)]
        self.full = any(v is not None for v, _ in parts)
        if self.full:
            eye = torch.eye(self.dim, dtype=torch.float64)
            self.vecs = torch.stack([v if v is not None else eye for v, _ in parts])  # [K, D, D]
        else:
            self.vecs = None
        self.lams = torch.stack([lam for _, lam in parts])  # [K, D]

    @classmethod
    def two_d(cls, prediction_type: str = "epsilon", scheduler_config: dict | None = None) -> "GaussianMixture":
        """Five well-separated 2-D modes on a ring of radius 0.7 (about 12 std apart), unequal weights."""
        angles = np.deg2rad([90, 162, 234, 306, 18])
        means = 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        weights = [0.3, 0.2, 0.2, 0.15, 0.15]
        covs = [0.06**2, 0.05**2, [0.08**2, 0.03**2], 0.05**2, 0.04**2]
        return cls(weights, means, covs, prediction_type, scheduler_config)

    @classmethod
    def image_shaped(cls, shape=(3, 16, 16), num_modes: int = 4, std: float = 0.1,
                     prediction_type: str = "epsilon", scheduler_config: dict | None = None) -> "GaussianMixture":
        """``num_modes`` isotropic modes whose means are simple pictures (colour gradients, stripes)."""
        c, h, w = shape
        yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        patterns = [xx, yy, np.sin(3 * np.pi * xx), np.cos(3 * np.pi * yy), xx * yy, np.sign(xx * yy)]
        means = []
        for k in range(num_modes):
            pattern = patterns[k % len(patterns)]
            colour = np.cos(2 * np.pi * (k / max(num_modes, 1) + np.arange(c) / max(c, 1)))
            means.append(0.8 * colour[:, None, None] * pattern[None])
        return cls(np.ones(num_modes), np.stack(means), std**2, prediction_type, scheduler_config)

    def _components(self, xf, a, s):
        """Per-component log N(x; a mu_k, C_k), posterior means and eps, each with a K axis."""
        means = self.means.to(xf.device, xf.dtype)          # [K, D]
        lams = self.lams.to(xf.device, xf.dtype)            # [K, D]
        diff = xf[:, None, :] - a[:, :, None] * means[None]   # [B, K, D]
        if self.full:
            vecs = self.vecs.to(xf.device, xf.dtype)
            r = torch.einsum("bkd,kde->bke", diff, vecs)
        else:
            r = diff
        a3, s3 = a[:, :, None], s[:, :, None]
        c = a3 * a3 * lams[None] + s3 * s3                 # [B, K, D]
        log_n = -0.5 * ((r * r / c).sum(-1) + torch.log(c).sum(-1) + self.dim * math.log(2 * math.pi))
        x0_r, eps_r = a3 * lams[None] / c * r, s3 / c * r
        if self.full:
            x0_k = torch.einsum("bke,kde->bkd", x0_r, vecs)
            eps_k = torch.einsum("bke,kde->bkd", eps_r, vecs)
        else:
            x0_k, eps_k = x0_r, eps_r
        return log_n, means[None] + x0_k, eps_k

    def _x0_eps(self, xf, a, s, class_labels=None):
        self._no_labels(class_labels)
        log_n, x0_k, eps_k = self._components(xf, a, s)
        w = torch.softmax(self.log_weights.to(xf.device, xf.dtype)[None] + log_n, dim=1)[:, :, None]
        return (w * x0_k).sum(1), (w * eps_k).sum(1)

    def log_prob(self, x, t) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x)
        log_n, _, _ = self._components(self._flat(x), a, s)
        return torch.logsumexp(self.log_weights.to(x.device, x.dtype)[None] + log_n, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64) * self.lams[k].sqrt()
        if self.full:
            z = torch.einsum("ne,nde->nd", z, self.vecs[k])
        return (self.means[k] + z).reshape(n, *self.event_shape).to(dtype)


class IdealDenoiser(AnalyticModel):
    """The exact posterior mean when the data is a finite set of images (uniform over the set).

    E[x0 | x_t = x] = sum_i softmax_i(-|x - a x_i|^2 / (2 s^2)) x_i. Sampling with it lands on
    the training images themselves. ``labels`` (optional, one per image) let ``class_labels``
    restrict the set to one class per batch row.
    """

    def __init__(self, images, labels=None, categories=None, prediction_type: str = "epsilon",
                 scheduler_config: dict | None = None, chunk_size: int = 512, names=None):
        images = torch.as_tensor(images)
        if images.ndim != 4 or images.shape[0] < 1:
            raise ValueError(f"images must have shape [N, C, H, W], got {list(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floats in [-1, 1], got dtype {images.dtype}")
        if images.abs().max() > 1 + 1e-6:
            raise ValueError(f"images must lie in [-1, 1]; found values up to {images.abs().max().item():.3g}")
        super().__init__(images.shape[1:], prediction_type, scheduler_config)
        # float32 storage halves memory; distances are accumulated in float64 chunk by chunk.
        self.images = images.reshape(images.shape[0], self.dim).to(torch.float32).contiguous()
        self.sq_norms = (self.images.double() ** 2).sum(1)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels)).long().reshape(-1)
        if self.labels is not None and self.labels.numel() != images.shape[0]:
            raise ValueError(f"labels must have one entry per image ({images.shape[0]}), got {self.labels.numel()}")
        self.categories = None if categories is None else [str(c) for c in categories]
        self.names = None if names is None else [str(n) for n in names]
        if self.names is not None and len(self.names) != images.shape[0]:
            raise ValueError(f"names must have one entry per image ({images.shape[0]}), got {len(self.names)}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer")
        self.chunk_size = chunk_size
        if self.labels is not None:
            # one label per class plus a null label (the last), as a class-conditional network has
            # for classifier-free guidance: rows with the null label use the whole set
            self.null_label = int(self.labels.max()) + 1
            self.config["num_class_embeds"] = self.null_label + 1

    @classmethod
    def from_npz(cls, path, **kwargs) -> "IdealDenoiser":
        """Images from an .npz with ``images`` uint8 [N, H, W, C] (and optional ``labels``, ``categories``)."""
        import os

        if not os.path.isfile(path):
            raise FileNotFoundError(f"image set {str(path)!r} not found (it is built by scripts/build_emoji_dataset.py)")
        try:
            with np.load(path, allow_pickle=False) as data:
                images = data["images"]
                labels = data["labels"] if "labels" in data.files else None
                categories = data["categories"] if "categories" in data.files else None
                names = data["names"] if "names" in data.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"image set {str(path)!r} is not a valid .npz with an 'images' array ({exc})") from None
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"image set {str(path)!r}: 'images' must be uint8 [N, H, W, C], got "
                             f"{images.dtype} {list(images.shape)}")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return cls(x, labels=labels, categories=categories, names=names, **kwargs)

    def _logits(self, xf, a, s, class_labels):
        """-|x - a x_i|^2 / (2 s^2) up to a per-row constant, float64, [B, N]."""
        x64 = xf.double().cpu()
        a64, s64 = a.double().cpu(), s.double().cpu()
        parts = []
        for start in range(0, self.images.shape[0], self.chunk_size):
            chunk = self.images[start:start + self.chunk_size].double()
            cross = x64 @ chunk.T                                           # [B, n]
            sq = self.sq_norms[start:start + self.chunk_size][None]
            parts.append((2 * a64 * cross - a64 * a64 * sq) / (2 * s64 * s64))
        logits = torch.cat(parts, dim=1)
        if class_labels is not None:
            if self.labels is None:
                raise ValueError("class_labels given but this image set has no labels")
            wanted = torch.as_tensor(class_labels).long().reshape(-1).cpu()
            if wanted.numel() == 1:
                wanted = wanted.expand(xf.shape[0])
            mask = (self.labels[None, :] == wanted[:, None]) | (wanted[:, None] == self.null_label)
            if not torch.all(mask.any(1)):
                raise ValueError(f"class_labels {wanted.tolist()} include a label with no images")
            logits = logits.masked_fill(~mask, float("-inf"))
        return logits

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training image closest to each row of ``x`` [B, ...] (Euclidean): (indices [B], distances [B]),
        in float64. Is a sample a copy of the training set, or something new?"""
        xf = x.detach().reshape(x.shape[0], -1).double().cpu()
        if xf.shape[1] != self.dim:
            raise ValueError(f"samples of shape {list(x.shape[1:])} do not match the images {list(self.event_shape)}")
        one = torch.ones(xf.shape[0], 1, dtype=torch.float64)
        # at alpha = sigma = 1 the logits are (|x|^2 - |x - x_i|^2) / 2 less the per-row |x|^2 / 2
        best, index = self._logits(xf, one, one, None).max(1)
        return index, ((xf * xf).sum(1) - 2 * best).clamp(min=0).sqrt()

    def posterior_weights(self, x, t, class_labels=None) -> torch.Tensor:
        """softmax weights [batch, N] of the images given x_t = x."""
        a, s = self.alpha_sigma(t, x)
        return torch.softmax(self._logits(self._flat(x), a, s, class_labels), dim=1)

    def _x0_eps(self, xf, a, s, class_labels=None):
        if torch.any(s <= 0):
            raise ValueError("the ideal denoiser needs sigma_t > 0 (it is a set of point masses at sigma = 0)")
        weights = torch.softmax(self._logits(xf, a, s, class_labels), dim=1)
        x0 = torch.zeros(xf.shape[0], self.dim, dtype=torch.float64)
        for start in range(0, self.images.shape[0], self.chunk_size):
            x0 += weights[:, start:start + self.chunk_size] @ self.images[start:start + self.chunk_size].double()
        x0 = x0.to(xf.device, xf.dtype)
        eps = (xf - a * x0) / s
        return x0, eps

    def log_prob(self, x, t) -> torch.Tensor:
        """log p_t(x), p_t the uniform mixture of N(a x_i, s^2 I)."""
        xf = self._flat(x)
        a, s = self.alpha_sigma(t, x)
        logits = self._logits(xf, a, s, None)
        x64 = xf.double().cpu()
        s64 = s.double().cpu()[:, 0]
        const = -(x64 * x64).sum(1) / (2 * s64 * s64) - self.dim * torch.log(s64) - 0.5 * self.dim * math.log(2 * math.pi)
        out = torch.logsumexp(logits, dim=1) - math.log(self.images.shape[0]) + const
        return out.to(x.device, x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        idx = torch.randint(self.images.shape[0], (n,), generator=generator)
        return self.images[idx].reshape(n, *self.event_shape).to(dtype)
