"""Seeing why: the data behind the lab's explanatory views, as plain rows and arrays.

Every function here is pure computation.  Models (networks, ``models.analytic``) and exact
answers come in as arguments, so this module imports neither ``models`` nor any UI; rows are
lists of dicts with Python scalars (``None`` where a value is undefined), ready for a
DataFrame, a plot or an API endpoint returning a table.

Views (the kernel pieces they use live in ``samplers.evaluation`` -- evaluation points,
trajectories, ``fit_order`` -- and ``samplers.reference`` -- the reference ODE solve; they are
re-exported here under their old names):
1. where a sampler evaluates the model: ``schedule_table``;
2. the 2-D teaching view: ``density_grid``, ``endpoint_distances`` (+ ``density_rows``,
   ``trajectory_rows`` to flatten them);
3. error against model evaluations: ``error_curve`` (a generator: the UI can stream it),
   ``planned_runs``;
4. one run seen step by step: ``trace`` and ``commit_index``.

Noise levels are k-diffusion sigmas (``k = sigma_t / alpha_t``), samples are VP-scaled
(what the model sees), and lambda = -log k is the half log-SNR, as everywhere in ``samplers``.
"""
from __future__ import annotations

import math
import time
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch

from samplers.core import Sampler, Step
from samplers.evaluation import (SAME_SIGMA, _as_tensor, _check_sampler, _lambda, _model_answer, _num,  # noqa: F401
                         _walk, evaluation_points, fit_order, is_adaptive, trajectories)
from samplers.reference import (Reference, _prediction_type_of, _schedule_of, flow_reference, ode_reference,  # noqa: F401
                        reference_for, reference_trajectory)
from samplers.schedule import NoiseSchedule

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
    first noise level) to the end of its grid; default: ``reference_for(model)``: ``flow_reference(model)``
    when the model has an exact flow map (GaussianData), else ``ode_reference(model)``, cached per start level.
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
        reference = reference_for(model)
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
