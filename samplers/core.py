"""The sampler API: options, the registry, and the loop that drives a sampler program.

A sampler *program* is a generator: it yields an ``Eval`` (a sample and a time at which it
needs the model), receives the ``Prediction`` for it, and finally returns the sample.  It
never calls the model itself, so one driver can stream every step (``Sampler.run``) and
another can push several programs' evaluations through the network as one batch
(``run_together``).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .grids import FINAL_SIGMAS, SPACINGS, Grid, build_grid
from .noise import NOISE_MODES, NoiseSource
from .model_wrapper import PREDICTION_TYPES, Prediction, predict, process_x0, processed
from .schedule import NoiseSchedule, vp_coefficients


# --------------------------------------------------------------------------------------------
# Options: declared once, validated once, listed for the UI.
@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    kind: type = float
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool = False

    def check(self, value):
        if value is None and self.nullable:
            return None
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ValueError(f"{self.name}={value!r} must be true or false")
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{self.name}={value!r} must be a number{self._range()}")
            if self.kind is int and float(value) != int(value):
                raise ValueError(f"{self.name}={value!r} must be an integer{self._range()}")
            value = self.kind(value)
            if not math.isfinite(value):
                raise ValueError(f"{self.name}={value!r} must be a finite number{self._range()}")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ValueError(f"{self.name}={value!r} is out of range{self._range()}")
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ValueError(f"{self.name}={value!r} is not allowed; allowed: {', '.join(map(str, self.choices))}")
            return value
        if self.kind is list:
            if not isinstance(value, (list, tuple, np.ndarray)):
                raise ValueError(f"{self.name}={value!r} must be a list")
            return list(value)
        raise TypeError(self.kind)

    def _range(self):
        lo = "" if self.low is None else f"{self.low:g} <= "
        hi = "" if self.high is None else f" <= {self.high:g}"
        return f" (allowed: {lo}{self.name}{hi})" if lo or hi else ""


OPTIONS: dict[str, Option] = {o.name: o for o in [
    # grid
    Option("spacing", "leading", "where the timesteps go", str, SPACINGS),
    Option("steps_offset", 0, "added to 'leading' timesteps (diffusers' steps_offset)", int, low=0, high=10),
    Option("rho", None, "exponent of spacing 'karras' (default 7, Karras et al.) and 'polyexponential' (default 1, "
           "k-diffusion); other spacings ignore it", float, low=0.01, high=100, nullable=True),
    Option("beta_alpha", 0.6, "first shape parameter of spacing 'beta' (Beta distribution; only that spacing)",
           float, low=0.01, high=100),
    Option("beta_beta", 0.6, "second shape parameter of spacing 'beta' (only that spacing)", float, low=0.01, high=100),
    Option("beta_d", 19.9, "spacing 'vp' only: beta_max - beta_min of the continuous VP schedule", float,
           low=0.01, high=1000),
    Option("beta_min", 0.1, "spacing 'vp' only: beta at s = 0 of the continuous VP schedule", float, low=0.0, high=100),
    Option("eps_s", 1e-3, "spacing 'vp' only: the smallest continuous time s", float, low=1e-6, high=0.5),
    Option("laplace_mu", 0.0, "spacing 'laplace' only: centre of the Laplace density in log sigma", float,
           low=-20, high=20),
    Option("laplace_beta", 0.5, "spacing 'laplace' only: scale of the Laplace density in log sigma", float,
           low=0.01, high=20),
    Option("sigma_min", None, "smallest sigma of a grid placed in sigma (karras, logsnr, exponential, "
           "polyexponential, kl_optimal, laplace; default: the schedule's)", float, low=1e-6, high=1e6, nullable=True),
    Option("sigma_max", None, "largest sigma of a grid placed in sigma (as sigma_min; default: the schedule's)",
           float, low=1e-6, high=1e6, nullable=True),
    Option("timesteps", None, "explicit descending train timesteps (spacing='custom')", list, nullable=True),
    Option("final_sigmas_type", "zero", "end the last step at sigma 0 or at sigma_min", str, FINAL_SIGMAS),
    Option("round_timesteps", False, "round the model's timestep while the solver keeps the exact "
           "sigma (diffusers' form for karras/logsnr grids)", bool),
    Option("timestep_rounding", "round", "how round_timesteps makes the model's timestep an integer: 'round' "
           "(diffusers' karras / lu-lambda grids) or 'floor' (diffusers' exponential grids and karras / lu on "
           "squaredcos_cap_v2, which cast to int)", str, ("round", "floor")),
    Option("noise", "diffusers", "where a stochastic sampler's fresh noise comes from: 'diffusers' (one generator "
           "in diffusers' draw order), 'per-image' (image i from its own seed: the same picture whatever the "
           "batch), 'brownian' (k-diffusion's Brownian tree per image; see samplers/noise.py)", str, NOISE_MODES),
    Option("eta", 0.0, "noise added per step: 0 = deterministic (ODE), 1 = the full ancestral / SDE noise",
           float, low=0.0, high=1.0),
    Option("cfg_pp", False, "CFG++ (Chung et al. 2024): the step's x0 from the guided prediction, its noise direction "
           "from the unconditional one (needs a model with both branches, samplers.guided; on an unguided model it "
           "is the plain sampler)", bool),
    # model output
    Option("prediction_type", "epsilon", "what the model predicts", str, PREDICTION_TYPES),
    Option("clip_sample", False, "clip predicted x0 to +-clip_sample_range", bool),
    Option("clip_sample_range", 1.0, "clip range for x0", float, low=1e-3, high=1e3),
    Option("thresholding", False, "dynamic thresholding of predicted x0 (Imagen)", bool),
    Option("dynamic_thresholding_ratio", 0.995, "quantile for dynamic thresholding", float, low=0.5, high=1.0),
    Option("sample_max_value", 1.0, "upper bound of the dynamic threshold", float, low=1.0, high=1e3),
    # shared by the higher-order families (each method narrows the values it accepts in Method.choices)
    Option("order", 2, "order of the solver / number of past evaluations combined (diffusers' solver_order)",
           int, low=1, high=4),
    Option("lower_order_final", True, "drop to lower orders on the last steps (stabler at few steps)", bool),
    Option("euler_at_final", False, "take the very last step with first order", bool),
    Option("algorithm_type", "dpmsolver++", "DPM-Solver variant: noise (eps) or data (x0) form, ODE or SDE",
           str, ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis")),
    Option("solver_type", "midpoint", "second-order update rule", str,
           ("midpoint", "heun", "logrho", "tab", "bh1", "bh2")),
]}

SHAPE_OPTIONS = ("beta_alpha", "beta_beta", "beta_d", "beta_min", "eps_s", "laplace_mu", "laplace_beta")
GRID_OPTIONS = ("spacing", "steps_offset", "rho", "sigma_min", "sigma_max", "timesteps", "round_timesteps") \
    + SHAPE_OPTIONS
X0_OPTIONS = ("clip_sample", "clip_sample_range", "thresholding", "dynamic_thresholding_ratio", "sample_max_value")


def add_options(*options: Option) -> None:
    for o in options:
        if o.name in OPTIONS and OPTIONS[o.name] != o:
            raise RuntimeError(f"option {o.name} declared twice with different meanings")
        OPTIONS[o.name] = o


# --------------------------------------------------------------------------------------------
# The registry.
@dataclass(frozen=True)
class Diffusers:
    """How a diffusers scheduler class maps onto a method: data on the method, read by
    ``diffusers_config``.  ``defaults`` are the class's defaults for the keys we read;
    ``translate(cfg, method)`` turns keys that are not one-to-one options into options;
    ``picks(cfg)`` says whether a config of that class means this method (None: only by name)."""
    cls: str
    defaults: dict
    translate: Callable[[dict, str], dict] | None = None
    picks: Callable[[dict], bool] | None = lambda cfg: True


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    paper: str
    # The convergence order the lab measures (tests/test_convergence.py: Gaussian data, log-SNR
    # grid, default options with eta = 0); None where there is no ODE path (DDPM).
    order: int | None
    stochastic: bool                # its DEFAULT configuration draws noise
    options: tuple                  # option names that apply (beyond prediction_type)
    program: Callable               # program(sampler, x, rng) -> generator of Eval
    grid: Callable                  # grid(sampler) -> Grid
    nfe: Callable = lambda s: s.steps       # model evaluations for the sampler's settings (reads only)
    family: str = "ddim"            # which diffusers timestep table its spacings use
    defaults: dict = field(default_factory=dict)  # per-method option defaults: what defines the method
    choices: dict = field(default_factory=dict)   # per-method narrowing: option -> allowed values
    adaptive: bool = False          # picks its evaluation points from the model's answers (steps = a cap)
    plan: Callable | None = None    # plan(sampler) -> the precomputed coefficients, built with the Sampler
    nominal_order: int | None = None  # the textbook order where it differs from the measured one
    order_note: str = ""            # why they differ, or what the order means here (in words)
    diffusers: Diffusers | None = None


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in REGISTRY:
        raise RuntimeError(f"sampler {method.name!r} registered twice")
    unknown = (set(method.defaults) | set(method.choices)) - set(method.options) - {"prediction_type"}
    if unknown:
        raise RuntimeError(f"sampler {method.name!r}: defaults/choices for options it does not offer: {sorted(unknown)}")
    REGISTRY[method.name] = method
    return method


def alias(base: str, name: str, title: str, **changes) -> Method:
    """A new name for an existing family: the base method with other defaults (one registry entry)."""
    m = REGISTRY[base]
    defaults = dict(m.defaults, **changes.pop("defaults", {}))
    return register(replace(m, name=name, title=title, defaults=defaults, **changes))


def describe(steps: int = 10) -> list[dict]:
    """One row per sampler: name, title, paper, order (measured; nominal and a note where they
    differ), stochastic, model evaluations for ``steps`` steps with default options, the options
    that apply and their per-method narrowing, and the ComfyUI / A1111 names (aliases) that mean it
    with the options they set."""
    from .names import aliases as known_aliases
    aliases = known_aliases()
    rows = []
    for m in REGISTRY.values():
        try:
            nfe = Sampler(m.name, steps).nfe
        except ValueError:
            nfe = None
        rows.append(dict(name=m.name, title=m.title, paper=m.paper, order=m.order, nominal_order=m.nominal_order,
                         order_note=m.order_note, stochastic=m.stochastic, nfe=nfe, options=list(m.options),
                         choices=dict(m.choices), defaults=dict(m.defaults),
                         aliases={a: opts for a, (target, opts) in aliases.items() if target == m.name}))
    return rows


# --------------------------------------------------------------------------------------------
# What a program asks for and what the driver streams.
@dataclass
class Eval:
    x: torch.Tensor     # the VP-scaled sample the model sees
    t: float            # model time (train-timestep units, may be fractional)
    sigma: float        # k-sigma the solver assigns to x (may differ from t's when rounded)
    extra: dict | None = None  # anything a program wants to pass through to its step records
    uncond: bool = False  # also return the unconditional prediction (CFG++): Prediction.uncond_x0 / uncond_eps


@dataclass
class Step:
    """One record per model evaluation."""
    nfe: int                  # model evaluations so far
    total_nfe: int            # evaluations the whole run will take (an estimate for adaptive ones)
    t: float
    sigma: float
    x: torch.Tensor           # the current sample (VP scale): what the model will see next, or the result
    x0: torch.Tensor          # the model's prediction of the clean sample at this evaluation
    done: bool
    seconds: float = 0.0      # wall time since the run started


class NonFiniteError(ValueError):
    pass


# --------------------------------------------------------------------------------------------
class Sampler:
    """A sampling method with its schedule, grid and options fixed; reusable for many runs."""

    def __init__(self, method: str, steps: int, schedule: NoiseSchedule | None = None, **options):
        from .names import expand   # names reads the registry
        method, options = expand(method, options)
        self.method = REGISTRY[method]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps={steps!r} must be an integer >= 1")
        self.steps = int(steps)
        self.schedule = schedule if schedule is not None else NoiseSchedule.from_config({})
        allowed = set(self.method.options) | {"prediction_type"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"option(s) {', '.join(sorted(unknown))} do not apply to sampler {method!r}; "
                             f"its options: {', '.join(sorted(allowed))}")
        values = {name: OPTIONS[name].default for name in allowed}
        values.update(self.method.defaults)
        for name, value in options.items():
            values[name] = OPTIONS[name].check(value)
            allowed_values = self.method.choices.get(name)
            if allowed_values is not None and values[name] not in allowed_values:
                raise ValueError(f"{name}={value!r} is not allowed for sampler {method!r}; allowed: "
                                 f"{', '.join(map(str, allowed_values))}")
        self.options = values
        self.prediction_type = values["prediction_type"]
        self.grid: Grid = self.method.grid(self)
        self.plan = self.method.plan(self) if self.method.plan else None

    def with_grid(self, grid: Grid) -> "Sampler":
        """The same sampler on another grid (its plan recomputed): for tests and experiments."""
        other = copy.copy(self)
        other.grid = grid
        other.plan = self.method.plan(other) if self.method.plan else None
        return other

    # convenience views
    @property
    def name(self) -> str:
        return self.method.name

    @property
    def timesteps(self) -> np.ndarray:
        return self.grid.t[:-1]

    @property
    def sigmas(self) -> np.ndarray:
        return self.grid.sigma

    @property
    def nfe(self) -> int:
        return int(self.method.nfe(self))

    def opt(self, name):
        return self.options[name]

    def x0_processed(self, x0: torch.Tensor) -> torch.Tensor:
        return process_x0(x0, self.options)

    def make_grid(self, family: str | None = None, final: str | None = None, **overrides) -> Grid:
        """The grid from the sampler's grid options (methods call this from their ``grid`` hook)."""
        o = self.options
        kw = dict(family=family or self.method.family, steps_offset=o.get("steps_offset", 0),
                  rho=o.get("rho"), sigma_min=o.get("sigma_min"), sigma_max=o.get("sigma_max"),
                  shape={k: o[k] for k in SHAPE_OPTIONS if k in o},
                  timesteps=o.get("timesteps"), final=final or o.get("final_sigmas_type", "zero"),
                  round_timesteps=o.get("round_timesteps", False))
        kw.update(overrides)
        return build_grid(self.schedule, self.steps, o.get("spacing", "leading"), **kw)

    # running
    def program(self, noise: torch.Tensor, generator=None):
        if not isinstance(noise, torch.Tensor) or noise.ndim < 2:
            raise ValueError("noise must be a tensor [batch, ...]")
        rng = NoiseSource(generator, self.options.get("noise", "diffusers"), self.grid.sigma)
        return self.method.program(self, noise, rng)

    def run(self, model, noise: torch.Tensor, generator=None) -> Iterator[Step]:
        """Sample, yielding a ``Step`` after every model evaluation."""
        yield from drive(self, self.program(noise, generator), model)

    def sample(self, model, noise: torch.Tensor, generator=None) -> torch.Tensor:
        step = None
        for step in self.run(model, noise, generator):
            pass
        return step.x

    def __repr__(self):
        changed = {k: v for k, v in self.options.items() if v != OPTIONS[k].default}
        return f"Sampler({self.name!r}, steps={self.steps}, nfe={self.nfe}, {changed})"


def _model_time(t: float, batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((batch,), float(t), dtype=torch.float32, device=like.device)


def call_model(model, x: torch.Tensor, t: torch.Tensor, uncond: bool):
    """(output, unconditional output or None).  A model that can give both (``samplers.guided``'s
    ``with_uncond``) is asked for both where a program needs them; any other model has no guidance,
    so it is its own unconditional branch (None: the same output)."""
    if uncond and hasattr(model, "with_uncond"):
        return model.with_uncond(x, t)
    return model(x, t), None


def evaluate(model, request: Eval, sampler: Sampler, where: str = "") -> Prediction:
    try:
        out, un = call_model(model, request.x, _model_time(request.t, request.x.shape[0], request.x), request.uncond)
    except ValueError as exc:
        if sampler.options.get("timestep_type") == "continuous":   # say which option made the time unusable
            raise ValueError(f"timestep_type='continuous' gives the model t = 0.25 ln(sigma), which it refuses "
                             f"({exc}); allowed for this model: timestep_type='discrete'") from exc
        raise
    return to_prediction(out, request, sampler, where, un)


def to_prediction(out: torch.Tensor, request: Eval, sampler: Sampler, where: str = "",
                  uncond_out: torch.Tensor | None = None) -> Prediction:
    """The model's answer as x0 and eps, after the sampler's x0 clipping / thresholding (one place);
    with ``request.uncond`` also the unconditional branch's (the output itself where there is none)."""
    pred = _prediction(out, request, sampler, where)
    if request.uncond:
        un = pred if uncond_out is None else _prediction(uncond_out, request, sampler, where)
        pred.uncond_x0, pred.uncond_eps = un.x0, un.eps
    return pred


def _prediction(out: torch.Tensor, request: Eval, sampler: Sampler, where: str) -> Prediction:
    # one reduction instead of isfinite().all(): a NaN or inf anywhere makes the sum non-finite
    if not math.isfinite(float(out.sum(dtype=torch.float32))):
        raise NonFiniteError(f"the model returned NaN or inf {where}at t={request.t:.4g} "
                             f"(sigma={request.sigma:.4g})")
    out = out.to(request.x.dtype)
    alpha, sigma = vp_coefficients(request.sigma)
    pred = predict(out, request.x, alpha, sigma, sampler.prediction_type)
    return processed(pred, request.x, alpha, sigma, sampler.options)


def drive(sampler: Sampler, program, model) -> Iterator[Step]:
    """Run one program, calling the model for each request and yielding a Step per evaluation."""
    start = time.perf_counter()
    total = sampler.nfe
    nfe = 0
    try:
        request = next(program)
    except StopIteration:  # a program that needs no evaluation (cannot happen for steps >= 1)
        raise RuntimeError("sampler finished without evaluating the model") from None
    while True:
        nfe += 1
        pred = evaluate(model, request, sampler,
                        f"at evaluation {nfe} of sampler {sampler.name!r} ")
        try:
            following = program.send(pred)
        except StopIteration as stop:
            yield Step(nfe, max(total, nfe), request.t, request.sigma, stop.value, pred.model_x0, True,
                       time.perf_counter() - start)
            return
        yield Step(nfe, max(total, nfe), request.t, request.sigma, following.x, pred.model_x0, False,
                   time.perf_counter() - start)
        request = following


def run_together(model, jobs: list[tuple[Sampler, torch.Tensor, Any]]) -> Iterator[list[Step | None]]:
    """Run several (sampler, noise, generator) jobs in lock-step, one forward pass per round.

    In each round every unfinished job contributes its pending request; the rows are
    concatenated (each with its own timestep), evaluated in one call, and split back.  Yields,
    per round, a list with the new Step of each job (None for jobs already finished).
    """
    start = time.perf_counter()
    programs = [s.program(noise, gen) for s, noise, gen in jobs]
    pending: list[Eval | None] = [next(p) for p in programs]
    counts = [0] * len(jobs)
    while any(r is not None for r in pending):
        live = [i for i, r in enumerate(pending) if r is not None]
        xs = torch.cat([pending[i].x for i in live])
        ts = torch.cat([_model_time(pending[i].t, pending[i].x.shape[0], pending[i].x) for i in live])
        out, un = call_model(model, xs, ts, any(pending[i].uncond for i in live))
        sizes = [pending[i].x.shape[0] for i in live]
        un_parts = un.split(sizes) if un is not None else [None] * len(live)
        steps: list[Step | None] = [None] * len(jobs)
        for i, part, un_part in zip(live, out.split(sizes), un_parts):
            sampler, request = jobs[i][0], pending[i]
            counts[i] += 1
            pred = to_prediction(part, request, sampler,
                                 f"at evaluation {counts[i]} of sampler {sampler.name!r} ", un_part)
            try:
                pending[i] = programs[i].send(pred)
                steps[i] = Step(counts[i], max(sampler.nfe, counts[i]), request.t, request.sigma,
                                pending[i].x, pred.model_x0, False, time.perf_counter() - start)
            except StopIteration as stop:
                pending[i] = None
                steps[i] = Step(counts[i], counts[i], request.t, request.sigma, stop.value, pred.model_x0, True,
                                time.perf_counter() - start)
        yield steps
