"""A run's settings (every option, the seed) and the Python that repeats it with the samplers package.

What the app does, by hand::

    model = models.load(name)
    sampler = samplers.from_diffusers_config(model.scheduler_config, steps, method=sampler_name, **options)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((num_images, *shape), generator=g)       # the same generator then drives
    x = sampler.sample(model_fn, noise, generator=g)            # the sampler's own noise draws
    png = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

with ``model_fn = samplers.guided(model, torch.tensor(class_label), guidance_scale, guidance_rescale)``
for class-conditional models (the null label, scale 1, for "none").
"""
from __future__ import annotations

import samplers
from lab.catalog import ModelInfo
from lab.options import kernel_options, public_options
from lab.requests import Conditioning, SetupSpec
from lab.runs import Prepared, Resolved

def settings_of(req_model: str, info: ModelInfo, setup: SetupSpec, sampler: samplers.Sampler, seed: int, count: int,
              resolved: Resolved, cond: Conditioning) -> dict:
    return {
        "model": req_model, "model_loaded": info.loaded, "sampler": sampler.name, "steps": sampler.steps,
        "seed": seed, "num_images": count, "class_label": resolved.class_label,
        "guidance_scale": resolved.guidance_scale, "guidance_rescale": resolved.guidance_rescale,
        "rescale_betas_zero_snr": cond.rescale_betas_zero_snr,
        "options": public_options(sampler.options),
        "nfe": sampler.nfe, "timesteps": [round(float(t), 4) for t in sampler.timesteps],
    }


def reproduction_code(settings: dict, shape: tuple) -> str:
    """Python that recomputes the run with the samplers package alone."""
    # only what differs from the sampler's defaults on this model: the rest is what from_diffusers_config picks
    opts = {k: v for k, v in kernel_options(settings.get("set_options", settings["options"])).items()
            if k != "prediction_type"}
    opt_text = "".join(f", {k}={v!r}" for k, v in opts.items())
    model = settings["model_loaded"]
    lines = ["import torch, models, samplers",
             f"model = models.load({model!r})"]
    cfg = "model.scheduler_config"
    if settings["rescale_betas_zero_snr"]:
        cfg = "{**model.scheduler_config, 'rescale_betas_zero_snr': True}"
    lines.append(f"sampler = samplers.from_diffusers_config({cfg}, {settings['steps']}, "
                 f"method={settings['sampler']!r}{opt_text})")
    if settings.get("class_index") is not None or settings.get("null_label") is not None:
        label = settings["class_index"] if settings.get("class_index") is not None else settings["null_label"]
        extra = f", null_label={settings['null_label']}" if settings.get("null_label") is not None else ""
        lines.append(f"model = samplers.guided(model, torch.tensor({label}), {settings['guidance_scale']}, "
                     f"{settings['guidance_rescale']}{extra})")
    lines += [f"g = torch.Generator().manual_seed({settings['seed']})",
              f"noise = torch.randn(({settings['num_images']}, {', '.join(map(str, shape))}), generator=g)",
              "with torch.no_grad():",
              "    x = sampler.sample(model, noise, generator=g)",
              "images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # what the PNGs hold"]
    return "\n".join(lines)


def settings_with_model(settings: dict, prepared: Prepared) -> dict:
    settings["class_index"] = prepared.resolved.class_index
    settings["null_label"] = prepared.info.null_label
    return settings
