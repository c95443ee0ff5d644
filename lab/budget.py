"""What a request costs this machine, in seconds, before it runs.

A run's cost is its model evaluations (each sampler's real NFE: PNDM's warm-up, Heun's two per
step) times the time of one forward pass of that many rows, measured for each model on this
machine the first time it is prepared (a warm-up, then batches of 1 and 8 rows: fixed + per-row
seconds). A public Space refuses a request above ``MAX_SECONDS`` by name, before it takes a
worker; the ZeroGPU duration of a GPU call is the same estimate priced on the GPU.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch

from lab import reference
from lab.limits import Limits
from lab.requests import parse_compare, parse_generate
from lab.runs import Prepared, build_sampler, prepare, scheduler_config

SMALL, LARGE = 1, 8            # rows of the two timed batches (2-D models: LARGE_POINTS)
LARGE_POINTS = 512
GPU_FORWARD = (0.004, 0.002)   # fixed, per-row seconds on a GPU until a GPU call has been timed
_measured: dict[tuple, tuple[float, float]] = {}
_lock = threading.Lock()
_measuring = threading.Lock()   # one measurement at a time: two at once would time each other


class BudgetExceeded(ValueError):
    """A request whose estimated cost is above MAX_SECONDS (a ValueError: refused by name like the rest)."""


@dataclass(frozen=True)
class Cost:
    seconds: float
    evaluations: int      # model evaluations of the whole request (set-ups batched count once per round)
    rows: int             # images (or 2-D points) per evaluation, all set-ups together
    row_evaluations: int  # images x evaluations, summed over set-ups
    what: str             # what to lower, in parameter names


def _timed(model, x, t, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(x, t)
        best = min(best, time.perf_counter() - start)
    return best


def _key(prepared: Prepared) -> tuple:
    info = prepared.info   # guided runs pass the batch twice: timed apart
    return info.loaded, info.version, str(info.device), prepared.resolved.guidance_scale != 1.0


def forward_time(prepared: Prepared, measure: bool = True) -> tuple[float, float] | None:
    """(fixed, per-row) seconds of one forward pass of this prepared model (its guidance included);
    measured now if it never was (``measure=False``: None then)."""
    key = _key(prepared)
    with _measuring:
        with _lock:
            if key in _measured or not measure:
                return _measured.get(key)
        return _measure(prepared, key)


def _measure(prepared: Prepared, key: tuple) -> tuple[float, float]:
    info = prepared.info
    large = LARGE_POINTS if info.kind == "points" else LARGE
    shape = tuple(info.event_shape)
    t_of = lambda rows: torch.full((rows,), 500.0, device=info.device)   # a time per row, as the samplers give it
    x_small = torch.zeros((SMALL, *shape), device=info.device)
    x_large = torch.zeros((large, *shape), device=info.device)
    prepared.model(x_small, t_of(SMALL))   # warm-up: first-call allocations are not the steady cost
    small, big = _timed(prepared.model, x_small, t_of(SMALL)), _timed(prepared.model, x_large, t_of(large))
    per_row = max(0.0, (big - small) / (large - SMALL))
    fixed = max(small - per_row * SMALL, 1e-5)
    with _lock:
        _measured[key] = (fixed, per_row)
    return fixed, per_row


def record(prepared: Prepared, fixed: float, per_row: float) -> None:
    """Set a model's forward time (tests; a GPU call that timed itself)."""
    with _lock:
        _measured[_key(prepared)] = (fixed, per_row)


def forget() -> None:
    with _lock:
        _measured.clear()


def run_cost(prepared: Prepared, nfes: list[int], count: int, extra_evaluations: int = 0,
             what: str = "steps or num_images", measure: bool = True) -> Cost | None:
    """Set-ups of ``nfes`` evaluations run together on ``count`` images each (one batched pass per
    round), plus ``extra_evaluations`` passes of ``count`` rows (a reference solve). None: not
    measured and ``measure=False``."""
    timing = forward_time(prepared, measure)
    if timing is None:
        return None
    fixed, per_row = timing
    rounds = max(nfes, default=0)
    seconds = (rounds + extra_evaluations) * fixed + (sum(nfes) + extra_evaluations) * count * per_row
    return Cost(seconds, rounds + extra_evaluations, count * max(1, len(nfes)),
                (sum(nfes) + extra_evaluations) * count, what)


def check(cost: Cost | None, limits: Limits) -> None:
    """Refuse a request whose estimate is above MAX_SECONDS, naming the budget and what to lower."""
    if cost is not None and cost.seconds > limits.max_seconds:
        raise BudgetExceeded(
            f"this request would take about {cost.seconds:.0f} s of this machine ({cost.evaluations} model "
            f"evaluations of up to {cost.rows} images each); allowed: at most {limits.max_seconds:g} s per "
            f"request (MAX_SECONDS): lower {cost.what}")


def gpu_seconds(cost: Cost | None, fallback: int) -> int:
    """ZeroGPU duration: the same evaluations priced at a GPU's forward time, plus start-up, 15-120 s."""
    if cost is None:
        return fallback
    fixed, per_row = GPU_FORWARD
    seconds = cost.evaluations * fixed + cost.row_evaluations * per_row
    return int(min(120, max(15, 10 + 2 * seconds)))


def generate_cost(request, limits: Limits, prepared: Prepared | None = None, measure: bool = True) -> Cost | None:
    prepared = prepared or prepare(request.model, request.num_images, request.cond, limits)
    sampler = build_sampler(prepared.info, request.setup, request.cond, limits)
    return run_cost(prepared, [sampler.nfe], request.num_images, what="steps or num_images", measure=measure)


def compare_cost(request, limits: Limits, prepared: Prepared | None = None, measure: bool = True) -> Cost | None:
    prepared = prepared or prepare(request.model, request.num_images, request.cond, limits)
    nfes = [build_sampler(prepared.info, s, request.cond, limits, where=f"setups[{i}]: ").nfe
            for i, s in enumerate(request.setups)]
    extra = 0
    if request.reference and not prepared.info.exact_flow:
        key = reference.key_of(prepared, request.cond, request.seed, request.num_images, limits)
        if key not in reference.cached():
            extra = reference.solver(scheduler_config(prepared.info, request.cond), limits.reference_steps).nfe
    return run_cost(prepared, nfes, request.num_images, extra,
                    what="the steps, num_images or number of setups (or reference=false)", measure=measure)


def generate_gpu_seconds(values: dict, limits: Limits) -> int:
    """ZeroGPU duration of a /generate call from its raw values (a request that fails its checks: 15 s)."""
    try:
        return gpu_seconds(generate_cost(parse_generate(values, limits), limits), 15)
    except (ValueError, FileNotFoundError, OSError):
        return 15


def compare_gpu_seconds(values: dict, limits: Limits) -> int:
    try:
        return gpu_seconds(compare_cost(parse_compare(values, limits), limits), 15)
    except (ValueError, FileNotFoundError, OSError):
        return 15
