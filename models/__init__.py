"""Networks, checkpoint loading and analytic models for the sampler lab.

``load(source)`` returns a diffusers-compatible ``UNet2DModel`` (from a local folder, a hub
repo id or the embedded "default") or an analytic model; both are called as
``model(x, t)`` and carry ``.scheduler_config``. ``get(source)`` is the same through a small
LRU cache. No diffusers import anywhere in this package.
"""
from .analytic import GaussianData, GaussianMixture, IdealDenoiser, default_scheduler_config
from .cache import cache_clear, cache_info, get
from .embedded import EMBEDDED
from .loading import ALLOWED_HUB_MODELS, save_pretrained
from .sources import load
from .unet import UNet2DModel

__all__ = [
    "ALLOWED_HUB_MODELS", "EMBEDDED", "GaussianData", "GaussianMixture", "IdealDenoiser", "UNet2DModel",
    "cache_clear", "cache_info", "default_scheduler_config", "get", "load", "save_pretrained",
]
