"""Seeing why: the data behind the lab's explanatory views, as plain rows and arrays.

Every function here is pure computation.  Models (networks, ``models.analytic``) and exact
answers come in as arguments, so this module imports neither ``models`` nor any UI; rows are
lists of dicts with Python scalars (``None`` where a value is undefined), ready for a
DataFrame, a plot or an API endpoint returning a table.

Views:
1. where a sampler evaluates the model: ``evaluation_points``, ``schedule_table``;
2. the 2-D teaching view: ``density_grid``, ``trajectories``, ``reference_trajectory``,
   ``endpoint_distances`` (+ ``density_rows``, ``trajectory_rows`` to flatten them);
3. error against model evaluations: ``error_curve`` (a generator: the UI can stream it),
   ``fit_order``, and the references ``flow_reference`` / ``ode_reference``;
4. one run seen step by step: ``trace`` and ``commit_index``.

Noise levels are k-diffusion sigmas (``k = sigma_t / alpha_t``), samples are VP-scaled
(what the model sees), and lambda = -log k is the half log-SNR, as everywhere in ``samplers``.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch

from .core import Eval, Sampler, Step, evaluate
from .model_wrapper import Prediction, predict
from .schedule import NoiseSchedule, vp_coefficients

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


def schedule_table(setups) -> list[dict]:
    """``evaluation_points`` of several set-ups in one table, each row with its ``label`` and ``method``.

    ``setups``: a mapping label -> Sampler, or an iterable of (label, Sampler) or
    (label, Sampler, model, noise) tuples (the longer form for adaptive samplers).
    """
    items = list(setups.items()) if isinstance(setups, Mapping) else list(setups)
    if not items:
        raise ValueError("setups is empty; give label -> sampler pairs")
    rows = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 4):
            raise ValueError(f"setups entry {item!r} must be (label, sampler) or (label, sampler, model, noise)")
        label, sampler = item[0], _check_sampler(item[1], f"setups[{item[0]!r}]")
        model, noise = (item[2], item[3]) if len(item) == 4 else (None, None)
        for row in evaluation_points(sampler, model, noise):
            rows.append(dict(label=str(label), method=sampler.name, **row))
    return rows


# --------------------------------------------------------------------------------------------
# 2. The 2-D teaching view.
def _extent(extent) -> tuple[float, float, float, float]:
    if isinstance(extent, (int, float)) and not isinstance(extent, bool):
        e = float(extent)
        box = (-e, e, -e, e)
    else:
        try:
            box = tuple(float(v) for v in extent)
        except (TypeError, ValueError):
            box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or not (box[0] < box[1] and box[2] < box[3]):
        raise ValueError(f"extent={extent!r} must be a half-width > 0 or (xmin, xmax, ymin, ymax) with min < max")
    return box


def density_grid(model, t, extent=1.5, n: int = 64) -> dict:
    """log p_t on an n x n grid for a 2-D model with ``log_prob(x, t)`` (e.g. GaussianMixture.two_d()).

    ``t``: one model time or a list of them (``"clean"`` for the data density); the density is that
    of the VP sample x_t, the same coordinates as ``trajectories``.  Returns ``x`` [n], ``y`` [n],
    ``t`` (list) and ``log_prob`` [len(t), n, n] indexed [time, y, x].
    """
    log_prob = getattr(model, "log_prob", None)
    if not callable(log_prob):
        raise ValueError(f"model must have log_prob(x, t) (a 2-D analytic model), got {type(model).__name__}")
    if tuple(getattr(model, "event_shape", (2,))) != (2,):
        raise ValueError(f"density_grid needs a 2-D model; this one has event_shape {model.event_shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= 1000:
        raise ValueError(f"n={n!r} must be an integer in [2, 1000]")
    x0, x1, y0, y1 = _extent(extent)
    times = list(t) if isinstance(t, (list, tuple, np.ndarray)) else [t]
    if not times:
        raise ValueError("t is empty; give a model time or a list of them")
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)  # [y, x]
    points = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float64)
    out = np.empty((len(times), n, n))
    for i, ti in enumerate(times):
        if not isinstance(ti, str):
            ti = float(ti)
        out[i] = log_prob(points, ti).detach().cpu().double().numpy().reshape(n, n)
    return dict(x=xs, y=ys, t=times, log_prob=out)


def density_rows(density: dict) -> list[dict]:
    """``density_grid``'s arrays as rows (t, x, y, log_prob, density) for a scatter/heat plot."""
    rows = []
    for ti, grid in zip(density["t"], density["log_prob"]):
        for iy, y in enumerate(density["y"]):
            for ix, x in enumerate(density["x"]):
                lp = float(grid[iy, ix])
                rows.append(dict(t=ti if isinstance(ti, str) else float(ti), x=float(x), y=float(y),
                                 log_prob=_num(lp), density=_num(math.exp(lp)) if lp < 700 else None))
    return rows


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


def trajectory_rows(paths: np.ndarray, label: str = "", sigmas=None, max_points: int | None = None) -> list[dict]:
    """Rows (label, point, index, x, y[, sigma]) of a [rows, n, 2] trajectory array for a line plot."""
    paths = np.asarray(paths, dtype=np.float64)
    if paths.ndim != 3 or paths.shape[2] != 2:
        raise ValueError(f"paths must have shape [rows, n_points, 2], got {list(paths.shape)}")
    if sigmas is not None and len(sigmas) != paths.shape[0]:
        raise ValueError(f"sigmas has {len(sigmas)} entries for {paths.shape[0]} trajectory rows")
    count = paths.shape[1] if max_points is None else min(int(max_points), paths.shape[1])
    rows = []
    for p in range(count):
        for i in range(paths.shape[0]):
            row = dict(label=label, point=p, index=i, x=float(paths[i, p, 0]), y=float(paths[i, p, 1]))
            if sigmas is not None:
                row["sigma"] = _num(sigmas[i])
            rows.append(row)
    return rows


def _schedule_of(model, schedule: NoiseSchedule | None) -> NoiseSchedule:
    if schedule is not None:
        return schedule
    if isinstance(getattr(model, "schedule", None), NoiseSchedule):
        return model.schedule
    return NoiseSchedule.from_config(getattr(model, "scheduler_config", None) or {})


def _prediction_type_of(model, prediction_type: str | None) -> str:
    if prediction_type is not None:
        return prediction_type
    return (getattr(model, "scheduler_config", None) or {}).get("prediction_type", "epsilon")


def _direct_denoiser(model):
    """x0(x, alpha, sigma) at any noise level, where the model offers it.

    ``model(x, t)`` only covers the train times, i.e. sigma >= sigma(t=0); the last stretch of
    the flow down to sigma = 0 needs the denoiser below that.  Analytic models (models/analytic.py)
    compute it from (alpha, sigma) directly: ``model.x0_at(x, alpha, sigma)``.
    """
    x0_at = getattr(model, "x0_at", None)
    return x0_at if callable(x0_at) else None


class _Denoiser:
    """x0 at a k-sigma, from the model's direct form or from model(x, t) at t = t(k)."""

    def __init__(self, model, schedule: NoiseSchedule, prediction_type: str):
        self.model, self.schedule, self.prediction_type = model, schedule, prediction_type
        self.direct = _direct_denoiser(model)
        self.evaluations = 0

    def __call__(self, x: torch.Tensor, k: float) -> torch.Tensor:
        self.evaluations += 1
        alpha, sigma = vp_coefficients(k)
        if self.direct is not None and k > 0:
            return self.direct(x, alpha, sigma)
        t = float(self.schedule.t_of_sigma(k)) if math.isfinite(k) else self.schedule.num_train_timesteps - 1
        out = self.model(x, torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device))
        return predict(out.to(x.dtype), x, alpha, sigma, self.prediction_type).x0


# Dormand-Prince 5(4): stage nodes, stage weights, 5th-order weights and (5th - 4th)-order error weights.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# Largest step in log-sigma: features (mode selection) span about one unit; never step over one.
_LONGEST_STEP = 1.0


class _FlowSolver:
    """The probability-flow ODE between noise levels, adaptive Dormand-Prince 5(4).

    In y = x / alpha (the VE sample) and u = log k the ODE reads dy/du = y - x0(y, k): no stiff
    term at any noise level, and x0 is smooth in u, so an embedded Runge-Kutta pair with a tight
    per-element tolerance (|err| <= tol * (1 + |y|)) gives errors near ``tolerance``.
    """

    def __init__(self, denoise: "_Denoiser", tolerance: float, floor: float):
        self.denoise, self.tol, self.floor = denoise, tolerance, floor
        self.h = 0.05  # last accepted step size (carried across segments)

    def _slope(self, u: float, y: torch.Tensor) -> torch.Tensor:
        k = math.exp(u)
        return y - self.denoise(y / math.sqrt(1 + k * k), k)

    def _integrate(self, y: torch.Tensor, u0: float, u1: float) -> torch.Tensor:
        direction = 1.0 if u1 > u0 else -1.0
        u, f = u0, self._slope(u0, y)
        while (u1 - u) * direction > 1e-12:
            clamped = abs(u1 - u) < min(self.h, _LONGEST_STEP)  # a short step to land on u1
            h = min(self.h, _LONGEST_STEP, abs(u1 - u)) * direction
            stages = [f]
            for c, row in zip(_DP_C[1:], _DP_A[1:]):
                y_stage = y + h * sum(a * s for a, s in zip(row, stages) if a != 0.0)
                stages.append(self._slope(u + c * h, y_stage))
            y_new = y_stage  # the last stage point is the 5th-order solution (FSAL)
            err = h * sum(e * s for e, s in zip(_DP_E, stages) if e != 0.0)
            ratio = float((err.abs() / (self.tol * (1 + torch.maximum(y.abs(), y_new.abs())))).max())
            if ratio <= 1.0:
                u, y, f = u + h, y_new, stages[-1]
            grow = 5.0 if ratio == 0 else min(5.0, max(0.2, 0.9 * ratio ** -0.2))
            # a landing step that succeeded says nothing against the longer step size used before it
            self.h = max(self.h, abs(h) * grow) if clamped and ratio <= 1.0 else abs(h) * grow
        return y

    def run(self, x: torch.Tensor, k_from: float, k_to: float) -> torch.Tensor:
        """VP sample at k_from -> VP sample at k_to.

        Infinite k (zero terminal SNR) is left with one DDIM step to the largest finite k, where
        x0 barely depends on x; k = 0 is reached by the denoising jump from ``floor`` (tiny when
        the model answers below its train times, else the schedule's sigma_min, the same last
        step every sampler takes).
        """
        if k_to == k_from:
            return x
        if math.isinf(k_to):
            raise ValueError("the reference solve cannot run up to infinite noise")
        if math.isinf(k_from):
            top = self.denoise.schedule.sigma_max
            a_top, s_top = vp_coefficients(top)
            x = a_top * self.denoise(x, k_from) + s_top * x  # DDIM from pure noise: eps = x there
            k_from = top
            if k_to == k_from:
                return x
        end = k_to
        if k_to < self.floor:
            if k_to > 0:
                raise ValueError(f"sigma={k_to:g} is below the smallest noise level the model answers "
                                 f"({self.floor:g})")
            end = self.floor
        if end != k_from:
            y = self._integrate(x * math.sqrt(1 + k_from * k_from), math.log(k_from), math.log(end))
            x = y / math.sqrt(1 + end * end)
        if k_to == 0:
            x = self.denoise(x, end)  # error ~ floor^2 / (data variance): negligible for a tiny floor
        return x


def _sigma_axis(sigmas) -> list[float]:
    if isinstance(sigmas, Sampler):  # the sampler's own time axis (stand-in points + the end)
        return [r["sigma"] if r["sigma"] is not None else math.inf for r in evaluation_points(sigmas)] + \
               [float(sigmas.grid.sigma[-1])]
    try:
        axis = [float(s) for s in sigmas]
    except (TypeError, ValueError):
        raise ValueError(f"sigmas must be a list of noise levels or a Sampler, got {sigmas!r}") from None
    if not axis or any(math.isnan(s) or s < 0 for s in axis):
        raise ValueError(f"sigmas={axis} must be a non-empty list of noise levels >= 0")
    return axis


def reference_trajectory(model, starts, sigmas, schedule: NoiseSchedule | None = None,
                         prediction_type: str | None = None, tolerance: float = 1e-9) -> np.ndarray:
    """A very accurate probability-flow solve through the noise levels ``sigmas``.

    ``starts``: VP samples at ``sigmas[0]`` (e.g. ``trajectories(...)[0]``); ``sigmas``: the noise
    levels to report (a list, e.g. from ``trajectories(..., with_sigmas=True)``, or a fixed-grid
    Sampler for its own evaluation points and end; an adaptive sampler's points depend on the
    model, so take them from ``trajectories``).  Adaptive Dormand-Prince 5(4) in log-sigma with a
    per-element tolerance (errors of about ``tolerance`` relative; a full solve takes a few hundred
    model evaluations).  Down to sigma = 0 it needs a model that answers below its first train
    step (the analytic models do); for other models the last stretch is the usual denoising jump
    from sigma(t=0).  Use float64 ``starts`` and model.  Returns float64 [len(sigmas), *starts.shape].
    """
    schedule = _schedule_of(model, schedule)
    axis = _sigma_axis(sigmas)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 1e-14 <= tolerance <= 1e-2:
        raise ValueError(f"tolerance={tolerance!r} must be a number in [1e-14, 1e-2]")
    x = _as_tensor(starts, "starts")
    denoise = _Denoiser(model, schedule, _prediction_type_of(model, prediction_type))
    solver = _FlowSolver(denoise, float(tolerance), 1e-6 if denoise.direct is not None else schedule.sigma_min)
    if 0 < axis[0] < solver.floor:
        raise ValueError(f"sigmas[0]={axis[0]:g} is below the model's smallest noise level {solver.floor:g}")
    out = [x.detach().cpu().double().numpy()]
    with torch.no_grad():
        for k_from, k_to in zip(axis[:-1], axis[1:]):
            if k_from == 0 and k_to != 0:
                raise ValueError("sigmas go up from 0: the clean end is final")
            if k_from != 0:
                x = solver.run(x, k_from, k_to)
            out.append(x.detach().cpu().double().numpy())
    return np.stack(out)


def _energy_terms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.cdist(a, b).mean())


def endpoint_distances(ends, reference_ends, fresh_samples) -> dict:
    """How far a sampler's end points are from the exact ones and from the true distribution.

    ``ends``, ``reference_ends``: [n, d] (row i of both from the same starting noise);
    ``fresh_samples``: [m, d] independent draws of the data (e.g. ``GaussianMixture.sample``).
    Returns ``mean_distance`` and ``max_distance`` (Euclidean, row i to row i) and
    ``energy_distance`` = 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely's E-statistic, the V-statistic form:
    never negative, 0 only for identical clouds, biased up by about E|X-X'|/n for a finite sample).
    """
    a = _as_tensor(ends, "ends").double().reshape(len(ends), -1)
    r = _as_tensor(reference_ends, "reference_ends").double().reshape(len(reference_ends), -1)
    f = _as_tensor(fresh_samples, "fresh_samples").double().reshape(len(fresh_samples), -1)
    if a.shape != r.shape:
        raise ValueError(f"ends {list(a.shape)} and reference_ends {list(r.shape)} must have the same shape")
    if a.shape[0] < 1 or f.shape[0] < 1 or f.shape[1] != a.shape[1]:
        raise ValueError(f"fresh_samples {list(f.shape)} must be non-empty draws of the same dimension as "
                         f"ends {list(a.shape)}")
    dist = (a - r).norm(dim=1)
    energy = 2 * _energy_terms(a, f) - _energy_terms(a, a) - _energy_terms(f, f)
    return dict(mean_distance=float(dist.mean()), max_distance=float(dist.max()),
                energy_distance=max(energy, 0.0), points=int(a.shape[0]), fresh=int(f.shape[0]))


# --------------------------------------------------------------------------------------------
# 3. Error against the number of model evaluations.
Reference = Callable[[torch.Tensor, float, float], torch.Tensor]


def flow_reference(model) -> Reference:
    """The exact answer for a model with an exact flow map (``GaussianData.flow(x, t_from, t_to)``):
    reference(x_start, sigma_start, sigma_end) -> the flow of x_start to sigma_end ("clean" at 0)."""
    flow = getattr(model, "flow", None)
    if not callable(flow):
        raise ValueError(f"model {type(model).__name__} has no exact flow map; use ode_reference(model)")
    schedule = _schedule_of(model, None)

    def reference(x, sigma_start, sigma_end):
        t_end = "clean" if sigma_end == 0 else float(schedule.t_of_sigma(sigma_end))
        return flow(x, float(schedule.t_of_sigma(sigma_start)), t_end)

    return reference


def ode_reference(model, tolerance: float = 1e-9, schedule: NoiseSchedule | None = None,
                  prediction_type: str | None = None) -> Reference:
    """A reference for any model: ``reference_trajectory`` between the two noise levels."""
    def reference(x, sigma_start, sigma_end):
        ends = reference_trajectory(model, x, [sigma_start, sigma_end], schedule, prediction_type, tolerance)[-1]
        return torch.as_tensor(ends, dtype=x.dtype, device=x.device)

    return reference


def _steps_by_nfe(method: str, options: dict, schedule: NoiseSchedule, largest_target: int) -> dict[int, int]:
    """steps -> the sampler's declared NFE, for every valid step count up to the largest target."""
    table, problem = {}, None
    for steps in range(1, largest_target + 1):
        try:
            nfe = Sampler(method, steps, schedule, **options).nfe
        except ValueError as err:  # e.g. too few steps for a method, too many for a spacing
            problem = err
            continue
        table[steps] = nfe
        if nfe > 2 * largest_target:
            break
    if not table:
        raise ValueError(f"sampler {method!r} with options {options} has no valid step count up to "
                         f"{largest_target}: {problem}")
    return table


def planned_runs(method: str, options: dict | None, schedule: NoiseSchedule, nfe_targets) -> list[tuple[int, int, int]]:
    """The runs ``error_curve`` makes, in order: (target, steps, declared NFE), one per distinct step count.

    For each target the step count whose declared NFE is closest to it (ties: the cheaper); a target
    that maps to a step count already planned adds nothing. Lets a caller size (or refuse) the work
    before any model evaluation.
    """
    targets = [int(t) for t in nfe_targets]
    if not targets or any(t < 1 for t in targets):
        raise ValueError(f"nfe_targets={targets} must be a non-empty list of integers >= 1")
    table = _steps_by_nfe(method, dict(options or {}), schedule, max(targets))  # names a bad method or option
    runs: dict[int, tuple[int, int, int]] = {}
    for target in targets:
        steps = min(table, key=lambda s: (abs(table[s] - target), table[s], s))
        runs.setdefault(steps, (target, steps, table[steps]))
    return list(runs.values())


def error_curve(method: str, options: dict | None, model, noise, reference: Reference | None = None,
                nfe_targets: Iterable[int] = range(4, 51), schedule: NoiseSchedule | None = None,
                seed: int = 0) -> Iterator[dict]:
    """Relative error of ``method`` against a reference solution, one row per step count, as it runs.

    For each target the step count whose declared NFE is closest to it is used (ties: the cheaper);
    targets that map to an already measured step count are skipped, and so are runs whose actual
    NFE was already reported (an adaptive method that needs less than its budget).
    Rows: ``target``, ``steps``, ``nfe`` (evaluations the run actually made), ``error`` =
    |x - x_ref| / |x_ref| over the whole batch, ``seconds`` (the run and its reference).

    ``reference(x_start, sigma_start, sigma_end)`` maps the sampler's own first sample (VP, at its
    first noise level) to the end of its grid; default: ``flow_reference(model)`` when the model
    has an exact flow map (GaussianData), else ``ode_reference(model)``, cached per start level.
    The error is against the deterministic flow: for stochastic settings (eta > 0, ancestral
    methods) it measures the sampler's spread, not a convergence order.  Use float64 noise and
    model to see errors far below float32 rounding.
    """
    options = dict(options or {})
    schedule = _schedule_of(model, schedule)
    options.setdefault("prediction_type", _prediction_type_of(model, None))
    noise = _as_tensor(noise, "noise")
    runs = planned_runs(method, options, schedule, nfe_targets)   # names a bad method, option or target first
    if reference is None:
        reference = flow_reference(model) if callable(getattr(model, "flow", None)) else ode_reference(model)
    cache: dict = {}
    reported = set()
    for target, steps, _ in runs:
        start = time.perf_counter()
        sampler = Sampler(method, steps, schedule, **options)
        first, count, result = None, 0, None
        with torch.no_grad():
            for request, _, after in _walk(sampler, noise, torch.Generator().manual_seed(seed),
                                           _model_answer(sampler, model)):
                if first is None:
                    first = request
                count += 1
                result = after
            # the same start sample and levels -> the same reference (an ODE reference costs hundreds of evaluations)
            key = (float(first.sigma), float(sampler.grid.sigma[-1]), first.x.detach().cpu().numpy().tobytes())
            if key not in cache:
                cache[key] = reference(first.x, float(first.sigma), float(sampler.grid.sigma[-1]))
            exact = cache[key]
        if count in reported:  # an adaptive method that needed less than its budget: nothing new
            continue
        reported.add(count)
        error = float((result.double() - exact.double()).norm() / exact.double().norm().clamp(min=1e-300))
        yield dict(target=target, steps=steps, nfe=count, error=_num(error), seconds=time.perf_counter() - start)


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


# --------------------------------------------------------------------------------------------
# 4. One run, step by step.
def _norm(v: torch.Tensor) -> float:
    return float(v.double().norm())


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b| over the whole tensor (0 when both are 0)."""
    diff, size = _norm(a - b), _norm(b)
    return diff / size if size > 0 else (0.0 if diff == 0 else math.inf)


def _thumbnail(x0: torch.Tensor) -> np.ndarray:
    """The first batch element: uint8 [H, W, C] for images in [-1, 1], else its float values."""
    first = x0[0].detach().cpu().double()
    if first.ndim == 3:
        return ((first.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return first.numpy()


def _check_steps(steps) -> list[Step]:
    steps = list(steps)
    if not steps or not all(isinstance(s, Step) for s in steps):
        raise ValueError("steps must be a non-empty list of samplers.Step records (from sampler.run)")
    return steps


def trace(steps, start=None, thumbnails_every: int = 1) -> dict:
    """Per-evaluation numbers of one run (the Step records of ``sampler.run``), plus x0 thumbnails.

    Row keys: ``nfe``, ``t``, ``sigma``, ``change`` = |x_i - x_{i-1}| / |x_i| (the sample after
    evaluation i against the one before; for the first row against ``start`` if given, else None),
    ``x_rms`` and ``x0_rms`` (root mean square of the sample and of the predicted x0),
    ``x0_change`` = |x0_i - x0_{i-1}| / |x0_i|, and ``x0_to_final`` = |x0_i - result| / |result|,
    the distance of the current prediction to the image the run ends with.  Norms are over the
    whole batch.  ``thumbnails``: (nfe, array) for every ``thumbnails_every``-th evaluation and the
    last: uint8 [H, W, C] of the first image for image-shaped samples, else float values.
    """
    steps = _check_steps(steps)
    if isinstance(thumbnails_every, bool) or not isinstance(thumbnails_every, int) or thumbnails_every < 1:
        raise ValueError(f"thumbnails_every={thumbnails_every!r} must be an integer >= 1")
    final = steps[-1].x
    previous_x = None if start is None else _as_tensor(start, "start")
    previous_x0 = None
    rows, thumbs = [], []
    for i, s in enumerate(steps):
        rows.append(dict(
            nfe=int(s.nfe), t=_num(s.t), sigma=_num(s.sigma),
            change=None if previous_x is None else _num(_norm(s.x - previous_x) / max(_norm(s.x), 1e-300)),
            x_rms=_num(_norm(s.x) / math.sqrt(s.x.numel())), x0_rms=_num(_norm(s.x0) / math.sqrt(s.x0.numel())),
            x0_change=None if previous_x0 is None else _num(_norm(s.x0 - previous_x0) / max(_norm(s.x0), 1e-300)),
            x0_to_final=_num(_relative(s.x0, final))))
        if i % thumbnails_every == 0 or i == len(steps) - 1:
            thumbs.append((int(s.nfe), _thumbnail(s.x0)))
        previous_x, previous_x0 = s.x, s.x0
    return dict(rows=rows, thumbnails=thumbs)


def commit_index(steps, fraction: float = 0.05) -> int | None:
    """The evaluation from which on the picture is decided.

    Definition: the smallest NFE i such that the predicted x0 of evaluation i and of every later
    evaluation lies within ``fraction`` of the final result (|x0_j - result| <= fraction * |result|
    for all j >= i).  None if not even the last prediction is that close.  ``steps``: the Step
    records of a run, or ``trace(...)["rows"]``.
    """
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction < 1e6):
        raise ValueError(f"fraction={fraction!r} must be a number > 0 (e.g. 0.05 for 5%)")
    steps = list(steps)
    if steps and isinstance(steps[0], dict):
        pairs = [(int(r["nfe"]), math.inf if r["x0_to_final"] is None else r["x0_to_final"]) for r in steps]
    else:
        steps = _check_steps(steps)
        final = steps[-1].x
        pairs = [(int(s.nfe), _relative(s.x0, final)) for s in steps]
    committed = None
    for nfe, distance in reversed(pairs):
        if distance > fraction:
            break
        committed = nfe
    return committed
