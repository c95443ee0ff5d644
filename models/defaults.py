"""The one default scheduler config of the models package: the DDPM paper's linear betas over
1000 steps.  Analytic models use it as a DDIM config; a checkpoint without a scheduler_config.json
gets it as the DDPM scheduler it was most likely trained with (``checkpoint_fallback_config``).
"""
from __future__ import annotations

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def default_scheduler_config(prediction_type: str = "epsilon") -> dict:
    """A diffusers-style DDIM config with the DDPM paper's linear betas."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type={prediction_type!r}; allowed: {', '.join(PREDICTION_TYPES)}")
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "trained_betas": None,
        "prediction_type": prediction_type,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "thresholding": False,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
    }


def checkpoint_fallback_config() -> dict:
    """For a checkpoint that ships no scheduler_config.json: the same schedule as diffusers' DDPMScheduler."""
    # only the schedule: every other key is left to the sampler's own defaults
    keys = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")
    config = {k: v for k, v in default_scheduler_config().items() if k in keys}
    return dict(config, _class_name="DDPMScheduler", clip_sample=True, variance_type="fixed_small",
                _note="no scheduler_config.json in the checkpoint; DDPM defaults assumed")
