"""Preparing a run (model, conditioning, sampler, noise) and the records of what is running."""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

import samplers
from lab.catalog import ModelInfo, load_model
from lab.limits import Limits
from lab.options import kernel_text
from lab.requests import Conditioning, SetupSpec
from lab.values import short


def scheduler_config(info: ModelInfo, cond: Conditioning) -> dict:
    cfg = dict(info.scheduler_config)
    if cond.rescale_betas_zero_snr:
        cfg["rescale_betas_zero_snr"] = True
    return cfg


def build_sampler(info: ModelInfo, setup: SetupSpec, cond: Conditioning, limits: Limits,
                  where: str = "") -> samplers.Sampler:
    try:
        sampler = samplers.from_diffusers_config(scheduler_config(info, cond), setup.steps, method=setup.sampler,
                                                 **setup.options)
    except ValueError as exc:
        raise ValueError(f"{where}{kernel_text(str(exc))}") from None
    if sampler.nfe > limits.max_nfe:
        raise ValueError(f"{where}sampler={setup.sampler!r} with steps={setup.steps} needs {sampler.nfe} model "
                         f"evaluations; allowed: at most MAX_NFE={limits.max_nfe} on this machine")
    return sampler


def default_options(info: ModelInfo, method_name: str, cond: Conditioning | None = None) -> dict:
    """The option values a run of ``method_name`` on this model uses when the request sets none."""
    sampler = samplers.from_diffusers_config(scheduler_config(info, cond or Conditioning()), 10, method=method_name)
    return dict(sampler.options)


def setup_options(info: ModelInfo, setup: SetupSpec, cond: Conditioning, where: str = "") -> tuple[dict, Any]:
    """(options with this model's defaults filled in, noise schedule) of a set-up at any step count:
    for callers that choose the step counts themselves (Error vs steps)."""
    try:
        options = {**default_options(info, setup.sampler, cond), **setup.options}
    except ValueError as exc:
        raise ValueError(f"{where}{kernel_text(str(exc))}") from None
    return options, samplers.NoiseSchedule.from_config(scheduler_config(info, cond))


@dataclass
class Resolved:
    """The class and guidance a run uses, after the model's defaults are filled in."""
    class_label: str                 # a class name or "none"
    class_index: int | None
    guidance_scale: float
    guidance_rescale: float


def resolve_conditioning(info: ModelInfo, cond: Conditioning) -> Resolved:
    label = info.default_class if cond.class_label is None else cond.class_label
    if info.classes is None:
        if label not in ("none", -1, None):
            raise ValueError(f"class_label={short(cond.class_label)}: model {info.name!r} is unconditional; "
                             f"allowed: none")
        index = None
        label = "none"
    elif isinstance(label, str) and label.strip().lower() == "none":
        index, label = None, "none"
    elif isinstance(label, str) and label in info.classes:
        index = info.classes.index(label)
    elif isinstance(label, (int, np.integer)) and not isinstance(label, bool) and (
            0 <= int(label) < len(info.classes) or int(label) == -1):
        index = None if int(label) == -1 else int(label)
        label = "none" if index is None else info.classes[index]
    else:
        raise ValueError(f"class_label={short(cond.class_label)} is not a class of model {info.name!r}; "
                         f"allowed: none, 0..{len(info.classes) - 1} or one of {info.classes}")
    scale = info.default_guidance if cond.guidance_scale is None else cond.guidance_scale
    rescale = 0.0 if cond.guidance_rescale is None else cond.guidance_rescale
    if not info.guidance or index is None:
        scale, rescale = 1.0, 0.0   # nothing to guide: an analytic model's classes are exact, or no class
    return Resolved(label, index, float(scale), float(rescale))


def model_function(net, info: ModelInfo, resolved: Resolved):
    """model(x, t) for the samplers: the network with its class and guidance, without autograd."""
    if info.guidance:
        label = info.null_label if resolved.class_index is None else resolved.class_index
        fn = samplers.guided(net, torch.tensor(label), resolved.guidance_scale, resolved.guidance_rescale,
                             null_label=info.null_label)
    elif info.classes is not None and resolved.class_index is not None:
        fn = samplers.guided(net, torch.tensor(resolved.class_index), 1.0, 0.0)
    else:
        fn = net

    def model(x, t):
        with torch.no_grad():   # thread-local and scoped to the call: safe when requests share threads
            return fn(x, t)

    model.config = getattr(net, "config", None)
    model.scheduler_config = getattr(net, "scheduler_config", None)
    return model


def make_noise(seed: int, count: int, shape: tuple, device=None) -> tuple[torch.Tensor, torch.Generator]:
    """The starting noise and the generator whose later draws the stochastic samplers use."""
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((count, *shape), generator=generator, dtype=torch.float32)
    return (noise if device is None else noise.to(device)), generator


def check_against_model(info: ModelInfo, count: int, cond: Conditioning, limits: Limits) -> None:
    if info.kind == "image" and count > limits.max_images:
        raise ValueError(f"num_images={count} is out of range (allowed: 1 <= num_images <= {limits.max_images} "
                         f"images on this machine; MAX_IMAGES)")
    if info.kind == "points" and count > limits.max_points:
        raise ValueError(f"num_images={count} is out of range (allowed: 1 <= num_images <= {limits.max_points} "
                         f"points of a 2-D model; MAX_POINTS)")
    if cond.rescale_betas_zero_snr and info.prediction_type != "v_prediction":
        raise ValueError(f"rescale_betas_zero_snr=True needs a v_prediction model (at zero terminal SNR an "
                         f"{info.prediction_type} model cannot be inverted at the first step); model {info.name!r} "
                         f"predicts {info.prediction_type}; allowed: false")


@dataclass
class Prepared:
    net: Any
    info: ModelInfo
    resolved: Resolved
    model: Callable


def prepare(model_id: str, count: int, cond: Conditioning, limits: Limits) -> Prepared:
    net, info = load_model(model_id, limits)
    check_against_model(info, count, cond, limits)
    resolved = resolve_conditioning(info, cond)
    return Prepared(net, info, resolved, model_function(net, info, resolved))


@dataclass
class RunRecord:
    id: int
    kind: str
    total_nfe: int
    nfe: int = 0
    status: str = "running"        # running, done, stopped, failed
    started: float = field(default_factory=time.time)
    finished: float | None = None


_run_ids = itertools.count(1)
_runs_lock = threading.Lock()
RUNS: deque = deque(maxlen=64)


def new_run(kind: str, total: int) -> RunRecord:
    record = RunRecord(next(_run_ids), kind, total)
    with _runs_lock:
        RUNS.append(record)
    return record


def active_runs() -> list[RunRecord]:
    with _runs_lock:
        return [r for r in RUNS if r.status == "running"]


class Tracked:
    """Marks a run record done / stopped / failed however its generator ends."""

    def __init__(self, record: RunRecord):
        self.record = record

    def __enter__(self):
        return self.record

    def __exit__(self, kind, exc, tb):
        self.record.finished = time.time()
        if kind is None:
            self.record.status = "done"
        elif issubclass(kind, GeneratorExit):
            self.record.status = "stopped"
        else:
            self.record.status = "failed"
        return False


def step_of(grid_t: np.ndarray, t: float) -> int:
    """Grid steps whose start lies at or above model time t (grids descend): 'step i of N'."""
    return int(np.count_nonzero(grid_t >= t - 1e-9))


@dataclass
class Live:
    """How far a run got, kept for the page's Stop: each set-up's sampler and latest step."""
    kind: str = ""
    record: RunRecord | None = None
    info: ModelInfo | None = None
    samplers: list = field(default_factory=list)
    latest: list = field(default_factory=list)     # each set-up's latest samplers.Step (None before its first)
    tracer: Any = None                             # lab.trace.Tracer of a single run

    def start(self, kind: str, record: RunRecord, info: ModelInfo, built: list, tracer=None) -> None:
        self.kind, self.record, self.info, self.samplers, self.tracer = kind, record, info, list(built), tracer
        self.latest = [None] * len(built)

    def position(self, i: int = 0) -> tuple[int, int, int]:
        """(step k, steps N, evaluations j) set-up i has reached."""
        sampler, step = self.samplers[i], self.latest[i]
        if step is None:
            return 0, sampler.steps, 0
        k = sampler.steps if step.done else step_of(np.asarray(sampler.timesteps, np.float64), float(step.t))
        return k, sampler.steps, step.nfe

    def stopped_status(self) -> str:
        """'stopped at step k/N (NFE j)', per set-up for a comparison."""
        if len(self.samplers) == 1:
            return "stopped at step {}/{} (NFE {})".format(*self.position())
        return "stopped at " + " · ".join("{}: step {}/{} (NFE {})".format(i + 1, *self.position(i))
                                          for i in range(len(self.samplers)))
