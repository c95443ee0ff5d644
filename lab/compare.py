"""Several set-ups from the same noise, batched through the network (one forward pass per round)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

import samplers
from lab.catalog import ModelInfo
from lab.limits import Limits
from lab.options import CLIPPING_OPTIONS, public_options
from lab.pictures import final_pictures, preview, stack
from lab import budget, reference
from lab.requests import CompareRequest
from lab.runs import Live, Tracked, build_sampler, make_noise, new_run, prepare
from lab.streaming import Throttle, relay


@dataclass
class CompareProgress:
    round: int
    steps: list[Any]               # the latest samplers.Step of each set-up
    seconds: float
    done: bool
    preview: np.ndarray | None
    message: str = ""
    images: list[list[np.ndarray]] | None = None
    samples: list[torch.Tensor] | None = None
    results: list[dict] | None = None
    info: dict | None = None


def _compare_preview(steps, info: ModelInfo, panel: int) -> np.ndarray:
    return stack([preview(st.x, st.x0, info, target=panel) for st in steps if st is not None])


def compare(request: CompareRequest, limits: Limits, clock=time.perf_counter,
            live: Live | None = None) -> Iterator[CompareProgress]:
    """Run every set-up from the same noise in lock-step (one batched forward pass per round).
    ``live`` (optional) is kept up to date with each set-up's latest step, for a Stop to report."""
    prepared = prepare(request.model, request.num_images, request.cond, limits)
    info = prepared.info
    budget.check(budget.compare_cost(request, limits, prepared, measure=False), limits)   # see generate()
    built = [build_sampler(info, s, request.cond, limits, where=f"setups[{i}]: ") for i, s in enumerate(request.setups)]
    jobs = []
    for sampler in built:
        # each set-up gets the same noise and its own generator in the same state as a solo run's
        noise, generator = make_noise(request.seed, request.num_images, info.event_shape, info.device)
        jobs.append((sampler, noise, generator))
    panel = 128 if info.kind == "image" else 160
    throttle = Throttle(limits.preview_fps, clock)
    record = new_run("compare", sum(s.nfe for s in built))
    start = clock()
    latest: list[Any] = [None] * len(jobs)
    if live is not None:
        live.start("compare", record, info, built)
        latest = live.latest
    finished_at: list[float | None] = [None] * len(jobs)
    with Tracked(record):
        for round_index, steps in enumerate(samplers.run_together(prepared.model, jobs), start=1):
            now = clock() - start
            for i, st in enumerate(steps):
                if st is not None:
                    latest[i] = st
                    if st.done:
                        finished_at[i] = now
            record.nfe = sum(st.nfe for st in latest if st is not None)
            all_done = all(st is not None and st.done for st in latest)
            drawing = clock()
            wanted = throttle.ready(force=all_done or round_index == 1)
            shown = _compare_preview(latest, info, panel) if wanted else None
            counts = " · ".join(f"{i + 1}: NFE {st.nfe}/{st.total_nfe}" for i, st in enumerate(latest))
            yield CompareProgress(round_index, list(latest), now, False, shown, message=counts)
            if shown is not None:
                throttle.spent(clock() - drawing)
        samples = [st.x for st in latest]
        distances: list[float | None] = [None] * len(jobs)
        reference_note = ""
        if request.reference:
            ref = yield from relay(reference.run(prepared, request.cond, request.seed, request.num_images, limits),
                                   lambda line: CompareProgress(-1, list(latest), clock() - start, False, None,
                                                                message=line))
            distances = [reference.distance(x, ref) for x in samples]
            reference_note = reference.description(info, limits)
            # the reference solves the probability-flow ODE; clipping x0 changes the equation
            clipped = [str(i + 1) for i, s in enumerate(built) if any(s.options.get(k) for k in CLIPPING_OPTIONS)]
            if clipped:
                reference_note += (f"; set-up {', '.join(clipped)} clip x0 (clip_sample / thresholding), the "
                                   f"reference does not: part of their distance is the clipping itself")
        results = []
        for i, (spec, sampler, st) in enumerate(zip(request.setups, built, latest)):
            results.append({
                "setup": i + 1, "label": spec.label(), "sampler": sampler.name, "steps": sampler.steps,
                "options": public_options(sampler.options),
                "nfe": st.nfe, "finished_at_seconds": round(finished_at[i] or 0.0, 4),
                "distance": None if distances[i] is None else round(distances[i], 6),
            })
        total_seconds = clock() - start
        info_out = {"model": request.model, "model_loaded": info.loaded, "seed": request.seed,
                    "num_images": request.num_images, "class_label": prepared.resolved.class_label,
                    "guidance_scale": prepared.resolved.guidance_scale,
                    "guidance_rescale": prepared.resolved.guidance_rescale,
                    "rescale_betas_zero_snr": request.cond.rescale_betas_zero_snr,
                    "batched_seconds": round(total_seconds, 4), "reference": reference_note or None,
                    "notice": info.notice, "results": results}
        if info.kind == "points":
            for r, x in zip(results, samples):
                r["points"] = x.detach().cpu().double().numpy().round(6).tolist()
        yield CompareProgress(-1, list(latest), total_seconds, True, _compare_preview(latest, info, panel),
                              message="done", images=[final_pictures(x, info) for x in samples], samples=samples,
                              results=results, info=info_out)
