"""The trace of one run: a small copy of every step, and at the end how the picture formed
(``lab.analysis.trace``: per-evaluation change, x0's distance to the result, thumbnails)."""
from __future__ import annotations

import math
from dataclasses import replace

import torch

import samplers
from lab import analysis
from lab.pictures import rgb, scatter

TRACE_SIDE = 64          # the trace keeps image #0 at most this wide (area average): small at any resolution
TRACE_THUMBNAILS = 16    # x0 thumbnails per run, about (plus the last)
COMMIT_FRACTION = 0.1    # "committed": every later x0 within 10% of the final image


class Tracer:
    """Keeps a small copy of every step of a run for ``analysis.trace``.

    Images: image #0 only, shrunk to TRACE_SIDE px (exact for the 32 px default model), so a long
    run on a large model stays a few MB. 2-D models: the whole point set. Copying costs a few
    microseconds a step; the numbers and thumbnails are computed once, at the end.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.kept: list[samplers.Step] = []
        self.shrunk = False

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "points":
            return x.detach().to("cpu", torch.float32, copy=True)
        first = x[:1].detach().float()
        if max(first.shape[-2:]) > TRACE_SIDE:
            first = torch.nn.functional.adaptive_avg_pool2d(first, TRACE_SIDE)
            self.shrunk = True
        return first.to("cpu", copy=True)

    def add(self, step: samplers.Step) -> None:
        self.kept.append(replace(step, x=self._small(step.x), x0=self._small(step.x0)))

    def result(self) -> dict:
        """rows (analysis.trace), thumbnails [(nfe, sigma, picture)], commit_nfe, about."""
        every = max(1, math.ceil(len(self.kept) / TRACE_THUMBNAILS))
        found = analysis.trace(self.kept, thumbnails_every=every)
        sigma_at = {r["nfe"]: r["sigma"] for r in found["rows"]}
        pictures = []
        for nfe, thumb in found["thumbnails"]:
            picture = scatter(thumb, size=128) if self.kind == "points" else rgb(thumb)
            pictures.append((nfe, sigma_at[nfe], picture))
        about = ("the whole point set" if self.kind == "points" else
                 f"image #0{f' at {TRACE_SIDE} px' if self.shrunk else ''}")
        return dict(rows=found["rows"], thumbnails=pictures,
                    commit_nfe=analysis.commit_index(found["rows"], COMMIT_FRACTION), about=about)
