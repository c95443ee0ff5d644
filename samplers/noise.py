"""Where a stochastic sampler's fresh noise comes from: one interface, three modes.

Every program draws through ``rng.randn_like(x, sigma, sigma_next)``, passing the k-sigmas of the
step the noise belongs to (the interval a Brownian increment spans). The ``noise`` option picks:

- ``diffusers`` (default): one generator, one ``randn(x.shape)`` per call, in diffusers' draw
  order: the same picture as diffusers; image i's noise depends on the whole batch.
- ``per-image``: image i draws from its own generator, seeded ``noise_seed(seed, i)``: the same
  seed gives image i the same noise whatever the batch around it.
- ``brownian``: image i's noise is the increment of its own Brownian motion W_i over
  [sigma_next, sigma], divided by sqrt(|sigma - sigma_next|) (a standard normal), with W_i a
  ``torchsde.BrownianTree`` over [smallest positive grid sigma, largest grid sigma] with entropy
  ``seed + i``: k-diffusion's ``BrownianTreeNoiseSampler`` with seeds [seed, seed + 1, ...], so image 0
  is ComfyUI's batch-of-one picture (its tree takes the seed itself; torchsde mixes the entropy
  through numpy's SeedSequence, so it never repeats the stream ``manual_seed(seed)``). Draws that are not such an increment (no sigmas given, sigma_next = 0, or a level
  outside the tree such as Karras churn above the top sigma) come from image i's per-image
  generator instead, so the run stays batch-invariant.

Seeding: ``seed`` is ``generator.initial_seed()`` of the generator passed to ``Sampler.run`` (an
int is taken as the seed itself; None draws one from torch's global generator, as k-diffusion
does). ``noise_seed`` mixes (seed, i) through numpy's SeedSequence so that image 0's step noise
is never the stream ``torch.Generator().manual_seed(seed)`` that usually made the starting noise.
The app makes the starting noise that way (one batch draw), which gives image i the same start
whatever the batch when an image's size is a multiple of 16 values (torch's CPU draw order).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

NOISE_MODES = ("diffusers", "per-image", "brownian")


def noise_seed(seed: int, index: int) -> int:
    """The seed of image ``index``'s per-image generator (also brownian's draws outside the tree)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))  # < 2**63: a valid torch seed


def base_seed(generator) -> int:
    if generator is None:
        return int(torch.randint(0, 2 ** 62, []).item())
    if isinstance(generator, torch.Generator):
        return int(generator.initial_seed())
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool) and generator >= 0:
        return int(generator)
    raise ValueError(f"generator={generator!r}: noise='per-image' and 'brownian' derive every image's noise from "
                     f"one seed; allowed: a torch.Generator, a non-negative int seed, or None")


class NoiseSource:
    """Gaussian draws for a program (see the module docstring for the modes).

    In ``diffusers`` mode a list of generators gives each batch element its own generator (an
    element's result then never depends on the rest of the batch).
    """

    def __init__(self, generator=None, mode: str = "diffusers", sigmas=None):
        if mode not in NOISE_MODES:
            raise ValueError(f"noise={mode!r} is not allowed; allowed: {', '.join(NOISE_MODES)}")
        self.generator, self.mode = generator, mode
        self.seed = None if mode == "diffusers" else base_seed(generator)
        positive = [float(s) for s in (sigmas if sigmas is not None else []) if s > 0]
        self.range = (min(positive), max(positive)) if len(positive) >= 2 else None
        self._gens = self._trees = None

    def randn_like(self, x: torch.Tensor, sigma=None, sigma_next=None) -> torch.Tensor:
        if self.mode == "diffusers":
            return self._diffusers(x)
        if self.mode == "brownian":
            w = self._increment(x, sigma, sigma_next)
            if w is not None:
                return w
        return torch.cat([torch.randn(x.shape[1:], generator=g, dtype=x.dtype)[None] for g in self._per_image(x)]
                         ).to(x.device)

    def _diffusers(self, x):
        g = self.generator
        if isinstance(g, (list, tuple)):
            if len(g) != x.shape[0]:
                raise ValueError(f"got {len(g)} generators for a batch of {x.shape[0]}")
            parts = [torch.randn((1,) + tuple(x.shape[1:]), generator=gi, device=gi.device, dtype=x.dtype)
                     for gi in g]
            return torch.cat(parts).to(x.device)
        device = g.device if g is not None else x.device
        return torch.randn(x.shape, generator=g, device=device, dtype=x.dtype).to(x.device)

    def _check_batch(self, made, x):
        if made is not None and len(made) != x.shape[0]:
            raise ValueError(f"noise={self.mode!r}: the batch changed from {len(made)} to {x.shape[0]} images")

    def _per_image(self, x):
        self._check_batch(self._gens, x)
        if self._gens is None:   # CPU generators: the same numbers on every device
            self._gens = [torch.Generator().manual_seed(noise_seed(self.seed, i)) for i in range(x.shape[0])]
        return self._gens

    def _increment(self, x, sigma, sigma_next):
        """W(sigma_next) - W(sigma) over sqrt(|sigma_next - sigma|) per image, or None where the
        interval is not inside the tree."""
        if sigma is None or sigma_next is None or self.range is None:
            return None
        a, b = float(sigma), float(sigma_next)
        lo, hi = self.range
        slack = 1e-9 * hi
        if a == b or min(a, b) < lo - slack or max(a, b) > hi + slack:
            return None
        self._check_batch(self._trees, x)
        if self._trees is None:
            import torchsde   # only this mode needs it
            w0 = torch.zeros(x.shape[1:], dtype=x.dtype)
            self._trees = [torchsde.BrownianTree(lo, w0, hi, entropy=self.seed + i)
                           for i in range(x.shape[0])]
        t0, t1 = min(max(min(a, b), lo), hi), min(max(a, b), hi)
        sign = 1.0 if b > a else -1.0   # W(b) - W(a)
        with warnings.catch_warnings():   # torchsde stores the ends in the tensor's precision and warns
            warnings.filterwarnings("ignore", message="Should have t")   # when a query meets them
            w = torch.stack([tree(t0, t1) for tree in self._trees]) * sign
        return (w / abs(b - a) ** 0.5).to(x.device)
