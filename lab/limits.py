"""What one request may ask of this machine (environment variables, safe 2-vCPU defaults), and
how long a ZeroGPU call may hold the GPU."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

import torch


def _cuda() -> bool:
    return torch.cuda.is_available()


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this machine. Each field has an environment variable."""
    max_steps: int = 200          # MAX_STEPS: sampler steps per run / per set-up
    max_nfe: int = 400            # MAX_NFE: model evaluations per run / per set-up
    max_images: int = 8           # MAX_IMAGES: images per run (per set-up in a comparison)
    max_points: int = 2000        # MAX_POINTS: samples per run on the 2-D models
    max_compare: int = 6          # MAX_COMPARE: set-ups in one comparison
    max_resolution: int = 64      # MAX_RESOLUTION: largest image side (px) a model may have
    reference_steps: int = 200    # REFERENCE_STEPS: steps of the reference solve for distances
    queue_size: int = 16          # QUEUE_SIZE: waiting requests before new ones are turned away
    concurrency: int = 1          # MAX_CONCURRENCY: model runs at the same time
    preview_fps: float = 10.0     # PREVIEW_FPS: preview images per second at most
    max_seconds: float = 60.0     # MAX_SECONDS: estimated seconds of this machine one request may cost
    visitor_slots: int = 1        # VISITOR_SLOTS: runs one visitor may have queued or running at once

    ENV = {"max_steps": "MAX_STEPS", "max_nfe": "MAX_NFE", "max_images": "MAX_IMAGES",
           "max_points": "MAX_POINTS", "max_compare": "MAX_COMPARE", "max_resolution": "MAX_RESOLUTION",
           "reference_steps": "REFERENCE_STEPS", "queue_size": "QUEUE_SIZE", "concurrency": "MAX_CONCURRENCY",
           "preview_fps": "PREVIEW_FPS", "max_seconds": "MAX_SECONDS", "visitor_slots": "VISITOR_SLOTS"}
    BOUNDS = {"max_steps": (1, 1000), "max_nfe": (1, 10000), "max_images": (1, 256), "max_points": (1, 100000),
              "max_compare": (1, 6), "max_resolution": (8, 1024), "reference_steps": (10, 1000),
              "queue_size": (1, 1000), "concurrency": (1, 64), "preview_fps": (0.1, 60.0),
              "max_seconds": (1.0, 3600.0), "visitor_slots": (1, 1000)}

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        env = os.environ if environ is None else environ
        values = {}
        if _cuda():  # a GPU takes the 256 px hub models and a few runs at once
            values.update(max_resolution=256, concurrency=2)
        for f in fields(cls):   # ENV and BOUNDS have no annotation: class constants, not fields
            name = cls.ENV[f.name]
            raw = env.get(name)
            if raw is None or str(raw).strip() == "":
                continue
            kind = float if f.name in ("preview_fps", "max_seconds") else int
            lo, hi = cls.BOUNDS[f.name]
            try:
                value = kind(str(raw).strip())
            except ValueError:
                raise ValueError(f"environment {name}={raw!r} must be {'a number' if kind is float else 'an integer'} "
                                 f"(allowed: {lo:g} <= {name} <= {hi:g})") from None
            if not lo <= value <= hi:
                raise ValueError(f"environment {name}={raw!r} is out of range (allowed: {lo:g} <= {name} <= {hi:g})")
            values[f.name] = value
        return cls(**values)

    def describe(self) -> str:
        return (f"steps ≤ {self.max_steps} (NFE ≤ {self.max_nfe}), images ≤ {self.max_images} "
                f"(2-D points ≤ {self.max_points}), set-ups ≤ {self.max_compare}, "
                f"resolution ≤ {self.max_resolution} px, "
                f"about {self.max_seconds:g} s of this machine per request, "
                f"{self.concurrency} run(s) at a time, queue ≤ {self.queue_size}, "
                f"{self.visitor_slots} run(s) per visitor queued or running")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def gpu_seconds(evaluations: int, rows: int) -> int:
    """A generous estimate of GPU time for ``evaluations`` forward passes of ``rows`` images."""
    return int(min(120, max(15, 10 + 0.05 * evaluations * max(1, math.ceil(rows / 8)))))
