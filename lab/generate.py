"""One run, streamed: a ``Progress`` after every model evaluation, its trace and its reproduction code."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from lab import budget
from lab.limits import Limits
from lab.options import jsonable, public_options
from lab.pictures import final_pictures, preview
from lab.reproduce import reproduction_code, settings_of, settings_with_model
from lab.requests import GenerateRequest
from lab.runs import Live, Tracked, build_sampler, default_options, make_noise, new_run, prepare, step_of
from lab.streaming import Throttle
from lab.trace import Tracer


@dataclass
class Progress:
    step: int                      # grid steps reached so far
    steps: int
    nfe: int                       # model evaluations so far
    total_nfe: int
    t: float
    sigma: float
    seconds: float
    done: bool
    preview: np.ndarray | None     # None when throttled away
    images: list[np.ndarray] | None = None   # final pictures (at the end)
    sample: torch.Tensor | None = None       # the final sample (at the end)
    info: dict | None = None                 # every setting, the seed, timing (at the end)
    trace: dict | None = None                # how the picture formed, step by step (at the end): see Tracer

    def status(self) -> str:
        return (f"step {self.step}/{self.steps} · NFE {self.nfe}/{self.total_nfe} · t = {self.t:.1f} · "
                f"sigma = {self.sigma:.4g} · {self.seconds:.2f} s")


def generate(request: GenerateRequest, limits: Limits, clock=time.perf_counter,
             live: Live | None = None) -> Iterator[Progress]:
    """Stream one run: a Progress after every model evaluation (a preview at most preview_fps times a second).
    ``live`` (optional) is kept up to date with the latest step, for a Stop to report."""
    prepared = prepare(request.model, request.num_images, request.cond, limits)
    info = prepared.info
    sampler = build_sampler(info, request.setup, request.cond, limits)
    # the validator measured this model's forward time; a direct call that never did runs unchecked
    budget.check(budget.run_cost(prepared, [sampler.nfe], request.num_images, measure=False), limits)
    noise, generator = make_noise(request.seed, request.num_images, info.event_shape, info.device)
    settings = settings_with_model(
        settings_of(request.model, info, request.setup, sampler, request.seed, request.num_images,
                  prepared.resolved, request.cond), prepared)
    defaults = default_options(info, sampler.name, request.cond)
    settings["set_options"] = public_options({k: v for k, v in sampler.options.items()
                                              if k in request.setup.options and jsonable(defaults.get(k)) != jsonable(v)})
    grid_t = np.asarray(sampler.timesteps, np.float64)
    throttle = Throttle(limits.preview_fps, clock)
    tracer = Tracer(info.kind)
    record = new_run("generate", sampler.nfe)
    if live is not None:
        live.start("generate", record, info, [sampler], tracer)
    start = clock()
    with Tracked(record):
        for step in sampler.run(prepared.model, noise, generator):
            record.nfe = step.nfe
            tracer.add(step)
            if live is not None:
                live.latest[0] = step
            seconds = clock() - start
            drawing = clock()
            shown = preview(step.x, step.x0, info) if throttle.ready(force=step.done or step.nfe == 1) else None
            progress = Progress(sampler.steps if step.done else step_of(grid_t, step.t), sampler.steps, step.nfe,
                                step.total_nfe, float(step.t), float(step.sigma), seconds, step.done, shown)
            if step.done:
                settings.update(seconds=round(seconds, 4), notice=info.notice)
                settings["code"] = reproduction_code(settings, info.event_shape)
                if info.kind == "points":
                    settings["points"] = step.x.detach().cpu().double().numpy().round(6).tolist()
                progress.images = final_pictures(step.x, info)
                progress.sample = step.x
                progress.info = settings
                progress.trace = tracer.result()
            yield progress
            if shown is not None:
                throttle.spent(clock() - drawing)   # drawing it, and the consumer's work until it asked again
