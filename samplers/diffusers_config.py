"""Build a sampler from a diffusers ``scheduler_config.json`` dict.

Keys present in the config override the defaults of the diffusers class the method mirrors
(as ``SomeScheduler.from_config(other_config)`` does in diffusers); missing keys take that
class's defaults, so a bare ``{"_class_name": "DDIMScheduler"}`` behaves like diffusers.
"""
from __future__ import annotations

from typing import Callable

from .core import OPTIONS, REGISTRY, Sampler
from .schedule import NoiseSchedule

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                 "rescale_betas_zero_snr")

# diffusers key -> our option name (same name when absent)
RENAMED = {"timestep_spacing": "spacing"}

# The diffusers class each method mirrors, and that class's defaults for the keys we read.
_COMMON = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
               trained_betas=None, prediction_type="epsilon", timestep_spacing="leading", steps_offset=0,
               rescale_betas_zero_snr=False)
CLASS_DEFAULTS: dict[str, dict] = {
    "DDIMScheduler": dict(_COMMON, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True,
                          thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0),
    "DDPMScheduler": dict(_COMMON, clip_sample=True, clip_sample_range=1.0, variance_type="fixed_small",
                          thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0),
    "PNDMScheduler": dict(_COMMON, skip_prk_steps=False, set_alpha_to_one=False),
}

# class name -> method name (a function of the config where one class covers several methods)
CLASS_TO_METHOD: dict[str, str | Callable[[dict], str]] = {
    "DDIMScheduler": "ddim",
    "DDPMScheduler": "ddpm",
    "PNDMScheduler": lambda cfg: "plms" if cfg.get("skip_prk_steps") else "pndm",
}
METHOD_TO_CLASS: dict[str, str] = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler",
                                   "pndm": "PNDMScheduler", "plms": "PNDMScheduler"}

# Translators for config keys that do not map one-to-one onto an option: each takes the merged
# config and returns options to set (later issues add karras / lu-lambda flags and the like).
TRANSLATORS: list[Callable[[dict, str], dict]] = []


def method_for(config: dict, method: str | None) -> str:
    if method is not None:
        if method not in REGISTRY:
            raise ValueError(f"method={method!r} is unknown; allowed: {', '.join(REGISTRY)}")
        return method
    cls = config.get("_class_name")
    if cls not in CLASS_TO_METHOD:
        raise ValueError(f"_class_name={cls!r} is not a scheduler we can mirror; allowed: "
                         f"{', '.join(CLASS_TO_METHOD)} (or pass method=...)")
    m = CLASS_TO_METHOD[cls]
    return m(config) if callable(m) else m


def from_diffusers_config(config: dict, num_inference_steps: int, method: str | None = None,
                          **options) -> Sampler:
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict (a scheduler_config.json), got {type(config).__name__}")
    name = method_for(config, method)
    cfg = dict(CLASS_DEFAULTS.get(METHOD_TO_CLASS.get(name, ""), _COMMON))
    cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
    try:
        schedule = NoiseSchedule.from_config({k: cfg[k] for k in SCHEDULE_KEYS if k in cfg})
    except ValueError as err:
        raise ValueError(f"scheduler config: {err}") from None
    allowed = set(REGISTRY[name].options) | {"prediction_type"}
    chosen = {}
    for key, value in cfg.items():
        opt = RENAMED.get(key, key)
        if opt in allowed and opt in OPTIONS:
            try:
                chosen[opt] = OPTIONS[opt].check(value)
            except ValueError as err:
                raise ValueError(f"scheduler config key {key!r}: {err}") from None
    for translate in TRANSLATORS:
        chosen.update({k: v for k, v in translate(cfg, name).items() if k in allowed})
    chosen.update(options)
    return Sampler(name, num_inference_steps, schedule, **chosen)
