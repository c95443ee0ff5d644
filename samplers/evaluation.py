"""Where and how a sampler evaluates the model, kernel-side: the evaluation points of a run, the
trajectories of a batch of starts, and the one order-fitting helper (``fit_order``).

Noise levels are k-diffusion sigmas (``k = sigma_t / alpha_t``), samples are VP-scaled (what the
model sees), and lambda = -log k is the half log-SNR, as everywhere in ``samplers``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .core import Eval, Sampler, evaluate
from .model_wrapper import Prediction, predict
from .schedule import vp_coefficients

# Two noise levels closer than this (relative) count as the same grid point.
SAME_SIGMA = 1e-9


# --------------------------------------------------------------------------------------------
# Helpers: JSON-friendly scalars, driving a program with any source of predictions.
def _num(value) -> float | None:
    """A finite float, or None (JSON and DataFrames both take None; inf/nan are not valid JSON)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _lambda(sigma: float) -> float | None:
    if sigma <= 0 or math.isinf(sigma):
        return None
    return -math.log(sigma)


def _as_tensor(values, name: str, dtype=torch.float64) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    try:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(values).__name__}") from None


def _check_sampler(sampler, name: str = "sampler") -> Sampler:
    if not isinstance(sampler, Sampler):
        raise ValueError(f"{name} must be a samplers.Sampler (samplers.create(...)), got {type(sampler).__name__}")
    return sampler


def _walk(sampler: Sampler, noise: torch.Tensor, generator, answer: Callable[[Eval], Prediction]):
    """Drive a sampler program, yielding (request, prediction, sample after it) per evaluation.

    Like ``core.drive`` but the predictions come from ``answer`` (a model or a stand-in) and
    the caller also sees each request, so the starting sample and every noise level are known.
    """
    program = sampler.program(noise, generator)
    request = next(program)
    while True:
        pred = answer(request)
        try:
            following = program.send(pred)
        except StopIteration as stop:
            yield request, pred, stop.value
            return
        yield request, pred, following.x
        request = following


def _model_answer(sampler: Sampler, model) -> Callable[[Eval], Prediction]:
    return lambda request: evaluate(model, request, sampler)


def _stand_in_answer(sampler: Sampler) -> Callable[[Eval], Prediction]:
    """Predictions of the exact denoiser for data that is a point mass at 0.

    x0 = 0 and eps = x / sigma_vp are finite at every noise level (also at zero terminal SNR,
    where "eps = 0" would make x0 = x / alpha infinite), so every program runs to the end.
    Variance channels are 0 so learned-variance DDPM runs too.
    """
    kind = sampler.prediction_type

    def answer(request: Eval) -> Prediction:
        x = request.x
        alpha, sigma = vp_coefficients(request.sigma)
        x0 = torch.zeros_like(x)
        eps = x / sigma if sigma > 0 else torch.zeros_like(x)
        output = eps if kind == "epsilon" else x0 if kind == "sample" else alpha * eps - sigma * x0
        return Prediction(x0=x0, eps=eps, variance=torch.zeros_like(x), output=output)

    return answer


def is_adaptive(sampler: Sampler) -> bool:
    """Whether the sampler chooses its evaluation points from the model's outputs (step-size control)."""
    return sampler.method.adaptive


# --------------------------------------------------------------------------------------------
# 1. Where the model is evaluated.
def evaluation_points(sampler: Sampler, model=None, noise=None, generator=None) -> list[dict]:
    """One row per model evaluation: where it lands on the noise axis and which step it serves.

    Without ``model`` the program runs on a 1-element sample with a stand-in prediction (the
    exact denoiser of data concentrated at 0), which is enough for every sampler whose points do
    not depend on the model: Heun's corrector evaluations, PNDM's Runge-Kutta warm-up and
    DPM-Solver-fast's order changes all show.  Adaptive samplers choose points from the model's
    outputs: pass ``model`` (and ``noise`` of its shape, or a model with ``event_shape``) to see
    the points for that model; the rows then say ``model="given"``.

    Row keys: ``index`` (1-based evaluation number, = Step.nfe), ``t`` (model time), ``sigma``
    (k-sigma the solver assigns), ``lambda`` (-log sigma; None at sigma 0 or inf), ``step``
    (the 1-based solver step it serves: step i runs from grid point i-1 to grid point i; a point
    between them belongs to step i; a point on grid point i starts step i+1, except when the next
    evaluation is at that same point, as Heun's corrector and the last stage of a Runge-Kutta
    warm-up step are: then it closes step i), ``on_grid`` (the point is
    one of the grid's points, not an intermediate stage), ``model`` ("stand-in" or "given"),
    ``adaptive`` (the points depend on the model).
    """
    _check_sampler(sampler)
    if model is None:
        answer = _stand_in_answer(sampler)
        noise = torch.ones(1, 1, dtype=torch.float64) if noise is None else _as_tensor(noise, "noise")
    else:
        if noise is None:
            shape = getattr(model, "event_shape", None)
            if shape is None:
                raise ValueError("evaluation_points with a model needs noise=<tensor of the model's input shape>")
            noise = torch.randn((1,) + tuple(shape), generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
        noise = _as_tensor(noise, "noise")
        answer = _model_answer(sampler, model)
    if generator is None:  # stochastic programs draw noise: a fixed seed keeps the table reproducible
        generator = torch.Generator().manual_seed(0)
    adaptive = is_adaptive(sampler)
    requests = [request for request, _, _ in _walk(sampler, noise, generator, answer)]
    steps, on_grid = _steps_of([float(r.sigma) for r in requests], np.asarray(sampler.grid.sigma, np.float64))
    # a program whose evaluations look ahead of their step (Heun++) says which step they serve
    steps = [r.extra["step"] if r.extra and "step" in r.extra else s for r, s in zip(requests, steps)]
    return [dict(index=i + 1, t=_num(r.t), sigma=_num(r.sigma), **{"lambda": _lambda(float(r.sigma))},
                 step=steps[i], on_grid=on_grid[i], model="stand-in" if model is None else "given",
                 adaptive=adaptive) for i, r in enumerate(requests)]


def _grid_index(grid_sigma: np.ndarray, sigma: float) -> int | None:
    """Index of the grid point at noise level sigma (within rounding), or None between points."""
    if math.isinf(sigma):
        same = np.isinf(grid_sigma)
    else:
        same = np.abs(grid_sigma - sigma) <= SAME_SIGMA * abs(sigma)
    hits = np.flatnonzero(same)
    return int(hits[0]) if len(hits) else None


def _steps_of(sigmas: list[float], grid_sigma: np.ndarray) -> tuple[list[int], list[bool]]:
    """The 1-based solver step each evaluation serves, and whether it sits on a grid point.

    Step i runs from grid point i-1 to grid point i.  A point strictly inside belongs to step i;
    a point on grid point i is where step i+1 starts, unless the next evaluation is at that same
    point: then the first of the two is step i's closing evaluation (Heun's corrector, the last
    stage of a Runge-Kutta warm-up step) and the second starts step i+1.
    """
    n = len(grid_sigma) - 1
    starts = grid_sigma[:-1]
    steps, on_grid = [], []
    for j, sigma in enumerate(sigmas):
        index = _grid_index(grid_sigma, sigma)
        on_grid.append(index is not None)
        if index is None:
            step = int(np.sum(starts > sigma))  # it lies in the step from the lowest grid point above it
        elif index >= 1 and j + 1 < len(sigmas) and _grid_index(grid_sigma, sigmas[j + 1]) == index:
            step = index
        else:
            step = index + 1
        steps.append(min(max(step, 1), n))
    return steps, on_grid


def trajectories(sampler: Sampler, model, starts, generator=None, with_sigmas: bool = False):
    """The sample after every model evaluation, for a batch of starting noises.

    ``starts``: standard-normal noise [n, ...] as for ``sampler.sample``.  Returns a float64 array
    [evals + 1, n, ...]: row 0 is the sampler's own first sample (the noise scaled to its first
    noise level), row i the sample after evaluation i (``Step.x``: what the model sees next, or
    the result).  ``with_sigmas=True`` also returns the noise level of each row (the next
    evaluation's sigma; the grid's end for the last row), the time axis for ``reference_trajectory``.
    """
    _check_sampler(sampler)
    noise = _as_tensor(starts, "starts")
    if noise.ndim < 2:
        raise ValueError(f"starts must be [n_points, ...], got shape {list(noise.shape)}")
    rows, sigmas = [], []
    with torch.no_grad():
        for request, _, after in _walk(sampler, noise, generator, _model_answer(sampler, model)):
            if not rows:
                rows.append(request.x.detach().cpu().double().numpy())
            sigmas.append(float(request.sigma))
            rows.append(after.detach().cpu().double().numpy())
    paths = np.stack(rows)
    if with_sigmas:
        return paths, np.asarray(sigmas + [float(sampler.grid.sigma[-1])])
    return paths


def fit_order(nfe, errors) -> dict:
    """Least-squares line log(error) = intercept + slope * log(nfe); ``order`` = -slope.

    Points with an error that is not finite and positive are left out (an exact answer has no
    logarithm).  Returns ``order``, ``slope``, ``intercept`` and ``points`` (how many were fitted).
    """
    n = np.asarray(list(nfe), dtype=np.float64)
    e = np.asarray([np.nan if v is None else v for v in errors], dtype=np.float64)
    if n.shape != e.shape:
        raise ValueError(f"nfe ({n.size} values) and errors ({e.size} values) must have the same length")
    keep = np.isfinite(e) & (e > 0) & np.isfinite(n) & (n > 0)
    if len(np.unique(n[keep])) < 2:
        raise ValueError("fit_order needs at least 2 distinct NFE values with a finite, positive error")
    slope, intercept = np.polyfit(np.log(n[keep]), np.log(e[keep]), 1)
    return dict(order=float(-slope), slope=float(slope), intercept=float(intercept), points=int(keep.sum()))
