"""The lab's one reference: where the probability-flow ODE takes the run's own starting noise at
t = T-1, at t = 0. Compare's distances and Error vs steps measure against it.

It is the closed-form flow where the model has one (``gaussian``: exact), else a
``REFERENCE_STEPS``-step F-PNDM solve (4th-order pseudo linear multistep, trailing grid). Its
accuracy, measured in tests/test_page.py (relative norm of the difference, 200 steps): 1.2e-3 against
the exact flow on ``gaussian``, 5.4e-4 against an 800-step solve on a small random network; the test
holds it under ``ACCURACY``. Distances and errors far below that are the reference's, not the sampler's.
Cached per (model, seed, images, conditioning, steps): ``Key``, nothing else.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

import models
import samplers
from lab import analysis
from lab.catalog import ModelInfo
from lab.limits import Limits
from lab.requests import Conditioning
from lab.runs import Prepared, make_noise, scheduler_config

METHOD = "f-pndm"
OPTIONS = dict(spacing="trailing", set_alpha_to_one=True, prev_timestep="grid", combine="eps")
ACCURACY = 2e-3     # what tests/test_page.py holds the 200-step solve to (relative norm)
CACHE_SIZE = 16
EXACT = "the exact probability-flow ODE solution from the same noise at t = T-1 (closed form)"
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Key:
    """Everything the reference depends on: the model (and its export), the noise, the conditioning."""
    model: str
    version: float
    seed: int
    count: int
    class_index: int | None
    guidance_scale: float
    guidance_rescale: float
    zero_snr: bool
    steps: int


def key_of(prepared: Prepared, cond: Conditioning, seed: int, count: int, limits: Limits) -> Key:
    r = prepared.resolved
    return Key(prepared.info.loaded, prepared.info.version, int(seed), int(count), r.class_index, r.guidance_scale,
               r.guidance_rescale, bool(cond.rescale_betas_zero_snr), limits.reference_steps)


def description(info: ModelInfo, limits: Limits) -> str:
    if info.exact_flow:
        return EXACT
    return (f"a {METHOD} solve with {limits.reference_steps} steps (trailing grid) from the same noise at "
            f"t = T-1, cached per model and seed")


def solver(config: dict, steps: int) -> samplers.Sampler:
    """The reference solve on a model's scheduler config."""
    return samplers.from_diffusers_config(config, steps, method=METHOD, **OPTIONS)


def run(prepared: Prepared, cond: Conditioning, seed: int, count: int, limits: Limits):
    """Generator of progress lines ("reference solve: NFE k/K", every 10 evaluations); returns the
    reference sample (cached: then nothing is yielded). Callers stream it with ``lab.relay``."""
    info = prepared.info
    key = key_of(prepared, cond, seed, count, limits)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    noise, _ = make_noise(seed, count, info.event_shape, info.device)
    if isinstance(prepared.net, models.GaussianData):
        top = samplers.NoiseSchedule.from_config(scheduler_config(info, cond)).num_train_timesteps - 1
        with torch.no_grad():
            result = prepared.net.flow(noise.double(), top, "clean").to(noise.dtype)
    else:
        sampler = solver(scheduler_config(info, cond), limits.reference_steps)
        result = None
        for step in sampler.run(prepared.model, noise):
            if step.nfe == 1 or step.nfe % 10 == 0:
                yield f"reference solve: NFE {step.nfe}/{sampler.nfe}"
            result = step.x
    with _lock:
        _cache[key] = result
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def exact_flow(net):
    """The closed-form flow map as an ``analysis.error_curve`` reference (each run from its own start),
    for a model that has one (``ModelInfo.exact_flow``)."""
    return analysis.flow_reference(net)


def cached() -> dict:
    """The cached references by key (a copy)."""
    with _lock:
        return dict(_cache)


def cache_clear() -> None:
    with _lock:
        _cache.clear()


def distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root-mean-square difference per image (per point set for 2-D models), averaged over the batch."""
    diff = (x.detach().double().cpu() - ref.detach().double().cpu()).reshape(x.shape[0], -1)
    if diff.shape[1] == 2:   # 2-D points: one set, RMS over all points
        return float(diff.pow(2).sum(1).mean().sqrt())
    return float(diff.pow(2).mean(1).sqrt().mean())
