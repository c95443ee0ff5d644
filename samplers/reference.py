"""The reference solve: the probability-flow ODE integrated to a tight tolerance (adaptive
Dormand-Prince in log sigma), for any model; and the exact flow where a model has one.
``reference_for(model)`` picks between the two: the error curves (lab.analysis.error_curve) and
bench/accuracy.py measure against it.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .core import Sampler
from .evaluation import _as_tensor, evaluation_points
from .model_wrapper import predict
from .schedule import NoiseSchedule, vp_coefficients

TOLERANCE = 1e-9   # the default tolerance: relative errors of about 1e-9 (bench/accuracy.py measures them)


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
                         prediction_type: str | None = None, tolerance: float = TOLERANCE) -> np.ndarray:
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


def ode_reference(model, tolerance: float = TOLERANCE, schedule: NoiseSchedule | None = None,
                  prediction_type: str | None = None) -> Reference:
    """A reference for any model: ``reference_trajectory`` between the two noise levels."""
    def reference(x, sigma_start, sigma_end):
        ends = reference_trajectory(model, x, [sigma_start, sigma_end], schedule, prediction_type, tolerance)[-1]
        return torch.as_tensor(ends, dtype=x.dtype, device=x.device)

    return reference


def reference_for(model, tolerance: float = TOLERANCE, schedule: NoiseSchedule | None = None,
                  prediction_type: str | None = None) -> Reference:
    """The reference for ``model``: its exact flow map where it has one (``flow_reference``), else
    the adaptive solve ``ode_reference`` to ``tolerance``."""
    if callable(getattr(model, "flow", None)):
        return flow_reference(model)
    return ode_reference(model, tolerance, schedule, prediction_type)
