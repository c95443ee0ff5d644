"""Accuracy vs model evaluations: every deterministic sampler (and the eta = 0 path of the stochastic
ones) against the exact ODE solution.

Two problems with known answers (float64, image-shaped 3x16x16, batch 8):

- ``gaussian``: x0 ~ N(mu, diag(var)) with per-pixel means and variances; the probability-flow
  ODE has an exact flow map, so the error is exact.
- ``mixture``: four image-shaped Gaussian modes (models.analytic.GaussianMixture); the reference
  is the kernel's reference solve (``samplers.reference.reference_for``, the default reference of
  ``lab.analysis.error_curve``: adaptive Dormand-Prince 5(4) in log sigma, tolerance 1e-9).  Its
  own error is printed in the table's header: its difference to a 100x tighter solve on
  ``mixture`` and to the exact flow on ``gaussian``; it is far below every entry.  The header also
  states how far the reference of Compare / Error vs steps on models without a closed form
  (lab/reference.py: a 200-step F-PNDM solve) is from it on these two problems.

Each sampler starts from the same noise at sigma_max (t = T-1) on a Karras grid (``--grid``;
samplers with a grid of their own keep it) and is compared with the exact solution between its
grid's first and last noise level.  Where diffusers has the scheduler class and that grid, it runs
from the same config (so the same grid) side by side.  NFE targets 5 6 8 10 15 20 50: the steps
are chosen so the model evaluations do not exceed the target; a cell whose actual count differs
is marked "(n)".

    python bench/accuracy.py [--nfe 5 6 8 10 15 20 50] [--grid karras|logsnr|trailing] [--batch 8]
                             [--reference-tolerance 1e-9] [--no-diffusers] [--no-plot] [--out DIR]

Writes bench/results/accuracy.md and bench/results/accuracy.png (needs matplotlib).
"""
from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import samplers  # noqa: E402
from models.analytic import GaussianData, GaussianMixture  # noqa: E402
from lab import reference as lab_reference  # noqa: E402
from lab.limits import Limits  # noqa: E402
from samplers import diffusers_config  # noqa: E402
from samplers.reference import TOLERANCE, ode_reference, reference_for  # noqa: E402

TABLE_SPACINGS = ("leading", "linspace", "trailing")
SHAPE = (3, 16, 16)


# --------------------------------------------------------------------------------------------
# problems
def gaussian_data() -> GaussianData:
    c, h, w = SHAPE
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    mu = 0.5 * np.stack([np.sin(2 * xx + k) * np.cos(yy - k) for k in range(c)])
    rng = np.random.default_rng(0)
    var = np.exp(rng.uniform(np.log(0.01), np.log(0.5), size=SHAPE))   # per-pixel std 0.1 ... 0.7
    return GaussianData(mu, var)


class Problem:
    """A model, the shared starting noise and its reference (``reference_for``: the exact flow map
    where the model has one, else the adaptive ODE solve), cached per (start, end) noise level.
    ``reference_error``: the largest difference of the reference to an independent check over the
    levels asked for: the ODE solve against the exact flow where there is one, else against the same
    solve at a 100x tighter tolerance."""

    def __init__(self, name, model, noise, tolerance: float = TOLERANCE):
        self.name, self.model, self.noise = name, model, noise
        self.exact = callable(getattr(model, "flow", None))
        self.solve = reference_for(model, tolerance)
        self.check = ode_reference(model, tolerance if self.exact else tolerance / 100)
        self._cache = {}
        self.reference_error = 0.0

    def reference(self, k_from: float, k_to: float) -> torch.Tensor:
        key = (round(k_from, 9), round(k_to, 12))
        if key not in self._cache:
            ref = self.solve(self.noise, k_from, k_to)
            self.reference_error = max(self.reference_error, rel_error(self.check(self.noise, k_from, k_to), ref))
            self._cache[key] = ref
        return self._cache[key]


def lab_reference_error(problem: Problem) -> float:
    """How far Compare's reference solve on models without a closed form (lab.reference: F-PNDM,
    REFERENCE_STEPS steps, trailing grid, t = T-1 to sigma 0) lands from this problem's reference."""
    config = problem.model.scheduler_config
    sampler = lab_reference.solver(config, Limits().reference_steps)
    sig = sampler.grid.sigma
    return rel_error(sampler.sample(problem.model, problem.noise), problem.reference(float(sig[0]), float(sig[-1])))


def rel_error(x, ref) -> float:
    return float((x.double() - ref.double()).norm() / ref.double().norm())


# --------------------------------------------------------------------------------------------
# samplers: ours and diffusers'
def counting(model):
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return model(x, t)
    return counted, calls


def ode_options(method: str) -> dict:
    """eta = 0 for a stochastic sampler that has it: the benchmark measures its ODE path."""
    m = samplers.REGISTRY[method]
    return {"eta": 0.0} if m.stochastic and "eta" in m.options else {}


def deterministic_methods() -> list[str]:
    """Registered samplers whose default options (eta = 0 for the stochastic ones that have it) draw no
    noise (checked by running two seeds).  CFG++ forms are left out: on these unguided models they are
    their plain samplers."""
    model = GaussianData(np.zeros((1, 2, 2)), 0.5)
    noise = torch.randn(1, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    names = []
    for row in samplers.describe():
        if row["order"] is None or row["name"].endswith("-cfg++") or (row["stochastic"] and not ode_options(row["name"])):
            continue
        try:
            s = samplers.create(row["name"], 4, **ode_options(row["name"]))
            a = s.sample(model, noise, torch.Generator().manual_seed(1))
            b = s.sample(model, noise, torch.Generator().manual_seed(2))
        except ValueError:
            continue
        if torch.equal(a, b):
            names.append(row["name"])
    return names


GRID_KEYS = {"karras": {"use_karras_sigmas": True}, "logsnr": {"use_exponential_sigmas": True},
             "trailing": {"timestep_spacing": "trailing"}}


def grid_options(method: str, grid: str) -> dict:
    """Our options for the benchmark grid (methods with their own grid keep it)."""
    return dict({"spacing": grid} if "spacing" in samplers.REGISTRY[method].options else {}, **ode_options(method))


def diffusers_config_for(method: str, grid: str) -> dict | None:
    """A working config of the diffusers class that mirrors ``method`` on ``grid`` (no clipping),
    or None where diffusers has no such class or the class has no such grid."""
    cls_name = diffusers_config.class_of(method)
    try:
        import diffusers
    except ImportError:
        return None
    cls = getattr(diffusers, cls_name, None) if cls_name else None
    if cls is None:
        return None
    keys = inspect.signature(cls.__init__).parameters
    if not all(k in keys for k in GRID_KEYS[grid]):
        return None
    base = dict(GRID_KEYS[grid], _class_name=cls_name, clip_sample=False)
    for extra in ({}, {"skip_prk_steps": True}, *({"algorithm_type": a} for a in
                  ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"))):
        cfg = dict(base, **extra)
        try:
            if diffusers_config.method_for(cfg, None) != method:
                continue
        except ValueError:
            continue
        # some combinations diffusers refuses (e.g. dpmsolver with a final sigma of 0): end at sigma_min
        for fix in ({}, {"final_sigmas_type": "sigma_min"}):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cls.from_config({k: v for k, v in dict(cfg, **fix).items() if k != "_class_name"}).set_timesteps(10)
                return dict(cfg, **fix)
            except ValueError:
                continue
    return None


def ours_sampler(method: str, steps: int, config: dict | None, grid: str):
    if config is not None:
        return samplers.from_diffusers_config(config, steps)
    options = grid_options(method, grid)
    try:
        return samplers.create(method, steps, **options)
    except ValueError:
        if "set_alpha_to_one" not in samplers.REGISTRY[method].options:
            raise
        # the PNDM family ends at sigma(t=0); a karras grid may already end there (to rounding),
        # which build_grid refuses: end at sigma 0 instead
        return samplers.create(method, steps, **options, set_alpha_to_one=True)


def steps_for(method: str, target: int, config: dict | None, grid: str) -> int | None:
    """Most steps whose (declared) NFE does not exceed the target."""
    best = None
    for steps in range(1, target + 1):
        try:
            nfe = ours_sampler(method, steps, config, grid).nfe
        except ValueError:
            continue
        if nfe <= target:
            best = steps
    return best


def run_diffusers(config: dict, steps: int, model, noise):
    import diffusers
    cls = getattr(diffusers, config["_class_name"], None)
    if cls is None:
        return None, 0
    scheduler = cls.from_config({k: v for k, v in config.items() if k != "_class_name"})
    counted, calls = counting(model)
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = counted(scheduler.scale_model_input(x, t), t.float().reshape(1).expand(x.shape[0]))
        x = scheduler.step(out, t, x).prev_sample
    return x, calls[0]


def measure(problem: Problem, method: str, target: int, config, grid: str, with_diffusers: bool) -> dict:
    steps = steps_for(method, target, config, grid)
    if steps is None:
        return {}
    sampler = ours_sampler(method, steps, config, grid)
    counted, calls = counting(problem.model)
    x = sampler.sample(counted, problem.noise)
    sig = sampler.grid.sigma
    ref = problem.reference(float(sig[0]), float(sig[-1]))
    row = dict(steps=steps, nfe=calls[0], ours=rel_error(x, ref))
    if with_diffusers and config is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xd, nd = run_diffusers(config, steps, problem.model, problem.noise)
            row.update(diffusers=rel_error(xd, ref) if xd is not None else None, diffusers_nfe=nd)
        except Exception as err:   # diffusers' own failures (e.g. PNDM below 4 steps) are results too
            row.update(diffusers=f"error: {type(err).__name__}", diffusers_nfe=None)
    return row


# --------------------------------------------------------------------------------------------
def fmt(value, nfe, target) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    text = "NaN" if not math.isfinite(value) else f"{value:.2e}"
    return text if nfe in (None, target) else f"{text} ({nfe})"


def markdown(results, problems, methods, targets, with_diffusers, reference_note, grid) -> str:
    lines = ["# Sampler accuracy vs model evaluations", "",
             "Relative L2 error of the final sample against the exact probability-flow solution from the same "
             f"noise (float64, 3x16x16, batch 8; {grid} grid wherever a sampler takes one, each sampler's own "
             "final noise level; diffusers: the same config, so the same grid). `gaussian`: exact flow map. "
             f"`mixture`: {reference_note}. A value marked (n) used n evaluations instead of "
             "the target; — = not available at that NFE (or no diffusers class). Stochastic samplers run their "
             "eta = 0 (ODE) path; CFG++ forms are their plain samplers on these unguided models.", ""]
    for target in targets:
        lines += [f"## NFE {target}", ""]
        head = ["method"]
        for p in problems:
            head += [f"{p.name} ours"] + ([f"{p.name} diffusers"] if with_diffusers else [])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in methods:
            cells = [m]
            for p in problems:
                r = results.get((p.name, m, target), {})
                cells.append(fmt(r.get("ours"), r.get("nfe"), target))
                if with_diffusers:
                    cells.append(fmt(r.get("diffusers"), r.get("diffusers_nfe"), target))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results, problems, methods, targets, path, with_diffusers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(7 * len(problems), 6), squeeze=False)
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2)))
    for ax, p in zip(axes[0], problems):
        for color, m in zip(colors, methods):
            pts = [(r["nfe"], r["ours"]) for t in targets if (r := results.get((p.name, m, t)))
                   and isinstance(r.get("ours"), float) and math.isfinite(r["ours"])]
            if pts:
                ax.plot(*zip(*pts), "-o", color=color, label=m, markersize=4)
            if with_diffusers:
                dpts = [(r["diffusers_nfe"], r["diffusers"]) for t in targets if (r := results.get((p.name, m, t)))
                        and isinstance(r.get("diffusers"), float) and math.isfinite(r["diffusers"])]
                if dpts:
                    ax.plot(*zip(*dpts), "--", color=color, marker="s", markerfacecolor="none", markersize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(targets)
        ax.set_xticklabels([str(t) for t in targets])
        ax.minorticks_off()
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, min(top, 3.0))   # errors above 1 are useless samples: off the chart
        ax.set_xlabel("model evaluations (NFE)")
        ax.set_ylabel("relative error vs exact solution")
        ax.set_title(f"{p.name}  (solid: ours, dashed squares: diffusers)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 6, 8, 10, 15, 20, 50])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grid", choices=sorted(GRID_KEYS), default="karras",
                        help="the grid of every sampler that takes one (default karras, rho 7)")
    parser.add_argument("--reference-tolerance", type=float, default=TOLERANCE,
                        help="tolerance of the reference ODE solve on mixture (default %(default)g)")
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    with_diffusers = not args.no_diffusers
    if with_diffusers:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            with_diffusers = False

    torch.set_num_threads(1)   # tensors of a few thousand numbers: more threads only add overhead
    start = time.perf_counter()
    noise = torch.randn(args.batch, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixture = GaussianMixture.image_shaped(SHAPE, num_modes=4, std=0.1)
    problems = [Problem("gaussian", gaussian_data(), noise, args.reference_tolerance),
                Problem("mixture", mixture, noise, args.reference_tolerance)]
    methods = deterministic_methods()
    results = {}
    for m in methods:
        # a stochastic sampler's diffusers class would draw noise: only ours runs its ODE path
        config = diffusers_config_for(m, args.grid) if with_diffusers and not ode_options(m) else None
        for p in problems:
            for target in args.nfe:
                results[(p.name, m, target)] = measure(p, m, target, config, args.grid, with_diffusers)
        print(f"  {m} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    lab_errors = [lab_reference_error(p) for p in problems]
    tol = args.reference_tolerance
    note = (f"the kernel's reference ODE solve (`samplers.reference.reference_for`, the default of "
            f"`lab.analysis.error_curve`: adaptive Dormand-Prince 5(4) in log sigma, tolerance {tol:g}; "
            f"its difference to the same solve at tolerance {tol / 100:g} "
            f"{problems[1].reference_error:.1e}, the same solve on `gaussian` {problems[0].reference_error:.1e} "
            f"from the exact flow). The reference of Compare and Error vs steps on models without a closed "
            f"form (`lab/reference.py`: {Limits().reference_steps}-step {lab_reference.METHOD}, t = T-1 to 0) is "
            f"{lab_errors[0]:.1e} (gaussian) and {lab_errors[1]:.1e} (mixture) from these references")
    text = markdown(results, problems, methods, args.nfe, with_diffusers, note, args.grid)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "accuracy.md"), "w") as f:
        f.write(text + "\n")
    if not args.no_plot:
        try:
            plot(results, problems, methods, args.nfe, os.path.join(args.out, "accuracy.png"), with_diffusers)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
