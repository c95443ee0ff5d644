"""k-diffusion 0.1.1.post1's sampling module as a test oracle, and the glue to run it on our models.

Its package ``__init__`` imports torchvision, clip, wandb and more, so ``sampling.py`` is loaded by
file path under a stub package whose ``utils`` has the one helper it uses (append_dims).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

import pytest
import torch

from samplers.schedule import vp_coefficients


def load_sampling():
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1 torchsde "
                    "torchdiffeq trampoline)")
    pytest.importorskip("torchsde")
    pytest.importorskip("torchdiffeq")
    if "kd_oracle.sampling" in sys.modules:
        return sys.modules["kd_oracle.sampling"]
    package = types.ModuleType("kd_oracle")
    package.__path__ = []
    utils = types.ModuleType("kd_oracle.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    sys.modules.update({"kd_oracle": package, "kd_oracle.utils": utils})
    path = os.path.join(list(spec.submodule_search_locations)[0], "sampling.py")
    module_spec = importlib.util.spec_from_file_location("kd_oracle.sampling", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["kd_oracle.sampling"] = module
    module_spec.loader.exec_module(module)
    return module


def denoiser(model, schedule):
    """k-diffusion's model(x, sigma) -> x0 for our eps model: VP input x / sqrt(1 + k^2) at the fractional
    train timestep of k (what our k-form programs feed the model)."""
    def d(x, sigma):
        k = float(sigma.reshape(-1)[0])
        a, s = vp_coefficients(k)
        t = torch.full((x.shape[0],), float(schedule.t_of_sigma(k)), dtype=torch.float64)
        return (x * a - s * model(x * a, t)) / a
    return d


class Draws:
    """One pre-drawn noise sequence served to both sides: as our rng and as k-diffusion's noise_sampler."""

    def __init__(self, shape, count=400, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.z = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(count)]
        self.used = 0

    def randn_like(self, x, sigma=None, sigma_next=None):
        self.used += 1
        return self.z[self.used - 1].clone()

    def __call__(self, sigma, sigma_next):
        return self.randn_like(None)
