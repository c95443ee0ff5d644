"""How long the data behind each explanatory view takes to compute (lab/analysis.py).

Views timed: the evaluation-point table for several set-ups; the 2-D teaching view (density
background, trajectories of 4 samplers x 200 points, the reference solve, end-point distances);
the error curve NFE 4..50 of one sampler on Gaussian data (exact reference) and on the 2-D
mixture (ODE reference); and the per-step trace of a streamed run.  Prints a markdown table
(median of --repeats runs), so the notes can say whether updating a plot slows the stream.

    python bench/plots.py [--repeats N] [--threads N] [--points N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import samplers  # noqa: E402
from lab import analysis  # noqa: E402
from models.analytic import GaussianData, GaussianMixture  # noqa: E402

# Preferred samplers for the views; whatever of them is registered is used.
TABLE_SETUPS = [("DDIM leading", "ddim", {}), ("DDIM trailing", "ddim", {"spacing": "trailing"}),
                ("PNDM", "pndm", {}), ("Heun karras", "heun", {"spacing": "karras"}),
                ("DPM-Solver-fast", "dpm-solver-fast", {}), ("UniPC", "unipc", {}),
                ("DPM-Solver++ 2M", "dpm-solver++", {})]
TRAJECTORY_METHODS = ["ddim", "heun", "dpm-solver++", "unipc", "euler", "pndm", "plms", "ddpm"]


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--points", type=int, default=200, help="2-D points per sampler")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []

    def record(view, what, fn, per=None, unit=""):
        seconds, result = median_seconds(fn, args.repeats)
        extra = f"{seconds / per * 1e3:.2f} ms {unit}" if per else ""
        rows.append((view, what, seconds, extra))
        return result

    # 1. evaluation points
    setups = {label: samplers.create(method, 20, **options) for label, method, options in TABLE_SETUPS
              if method in samplers.REGISTRY}
    table = record("schedule table", f"{len(setups)} set-ups x 20 steps", lambda: analysis.schedule_table(setups),
                   per=len(setups), unit="per set-up")

    # 2. the 2-D view
    mixture = GaussianMixture.two_d()
    starts = torch.randn(args.points, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chosen = [m for m in TRAJECTORY_METHODS if m in samplers.REGISTRY][:4]
    two_d = [samplers.create(m, 20, spacing="trailing") for m in chosen]
    record("2-D", "density background, 4 noise levels x 64^2",
           lambda: analysis.density_grid(mixture, [0, 100, 300, 999], 1.5, 64))
    paths = record("2-D", f"trajectories {'/'.join(chosen)}, 20 steps x {args.points} points",
                   lambda: [analysis.trajectories(s, mixture, starts) for s in two_d], per=len(two_d),
                   unit="per sampler")
    for tolerance in (1e-6, 1e-9):
        ref = record("2-D", f"reference solve to clean, {args.points} points, tolerance {tolerance:g}",
                     lambda: analysis.reference_trajectory(mixture, starts, [two_d[0].grid.sigma[0], 0.0],
                                                           tolerance=tolerance))
    fresh = mixture.sample(2000, torch.Generator().manual_seed(1))
    record("2-D", f"end-point distances, {len(two_d)} samplers vs 2000 fresh samples",
           lambda: [analysis.endpoint_distances(p[-1], ref[-1], fresh) for p in paths])

    # 3. error curves
    gaussian = GaussianData([0.3, -0.2], [0.5, 2.0])
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    curve = record("error curve", "DDIM logsnr, NFE 4..50, Gaussian (exact flow), 64 points",
                   lambda: list(analysis.error_curve("ddim", {"spacing": "logsnr"}, gaussian, noise)),
                   per=47, unit="per point")
    record("error curve", "DDIM trailing, NFE 4..50, 2-D mixture (ODE reference), 64 points",
           lambda: list(analysis.error_curve("ddim", {"spacing": "trailing"}, mixture, noise)),
           per=47, unit="per point")
    fit = analysis.fit_order([r["nfe"] for r in curve], [r["error"] for r in curve])

    # 4. the trace of a streamed run (image-shaped Gaussian mixture, as the app streams pictures)
    images = GaussianMixture.image_shaped((3, 32, 32))
    run = list(samplers.create("ddim", 20).run(images, torch.randn(1, 3, 32, 32,
                                                                 generator=torch.Generator().manual_seed(0))))
    record("trace", "20 steps of 3x32x32: rows + thumbnails + commit index",
           lambda: (analysis.trace(run), analysis.commit_index(run)), per=len(run), unit="per step")

    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (median)\n")
    print("| view | data | seconds | per item |\n|---|---|---|---|")
    for view, what, seconds, extra in rows:
        print(f"| {view} | {what} | {seconds:.3f} | {extra} |")
    print(f"\nschedule table rows: {len(table)}; DDIM fitted order on the Gaussian: {fit['order']:.3f}")


if __name__ == "__main__":
    main()
