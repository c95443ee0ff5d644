"""Sampler overhead: a full run with a near-free model, ours vs diffusers' scheduler loop.

The model is ``x * 0.1`` so almost all the time is the sampler's own work: for diffusers,
``set_timesteps`` + ``scale_model_input`` + ``step`` per evaluation; for us, building the
Sampler (its grid and options, like set_timesteps) + ``Sampler.sample`` (the driver, the
prediction conversion and the program).  Both build their noise schedule once, outside the
timed region.  By default the clock is the process's CPU time, so other processes on a shared
machine do not count (``--clock wall`` for elapsed time).
Prints a markdown table (ratio = ours / diffusers; target <= 0.8) and writes it to
bench/results/overhead.md.

    python bench/overhead.py [--steps 50] [--repeats 40] [--threads 1] [--only euler heun ...]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import samplers  # noqa: E402

TARGET = 0.8
# (row label, our method, diffusers class, scheduler config, our extra options)
ROWS = [
    ("DDIM", "ddim", "DDIMScheduler", {}, {}),
    ("DPM-Solver++(2M)", "dpm-solver++", "DPMSolverMultistepScheduler",
     {"algorithm_type": "dpmsolver++", "solver_order": 2}, {}),
    ("UniPC", "unipc", "UniPCMultistepScheduler", {}, {}),
    ("Euler", "euler", "EulerDiscreteScheduler", {}, {}),
    # the rest of the k-diffusion family
    ("Euler ancestral", "euler-a", "EulerAncestralDiscreteScheduler", {}, {}),
    ("Heun", "heun", "HeunDiscreteScheduler", {}, {}),
    ("DPM2", "dpm2", "KDPM2DiscreteScheduler", {}, {}),
    ("DPM2 ancestral", "dpm2-a", "KDPM2AncestralDiscreteScheduler", {}, {}),
    ("LMS (order 4)", "lms", "LMSDiscreteScheduler", {}, {}),
    ("Euler, karras sigmas", "euler", "EulerDiscreteScheduler", {"use_karras_sigmas": True}, {}),
]


def near_free_model(x, t):
    return x * 0.1


def diffusers_run(scheduler, noise, steps, generator):
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    kw = {"generator": generator} if "generator" in scheduler.step.__code__.co_varnames else {}
    for t in scheduler.timesteps:
        out = near_free_model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, **kw).prev_sample
    return x


def ours_run(template, noise, generator):
    sampler = samplers.Sampler(template.name, template.steps, template.schedule, **template.options)
    return sampler.sample(near_free_model, noise, generator)


CLOCKS = {
    # CPU time of this process: on a shared machine it leaves out the time other processes hold the
    # core (with one torch thread, the process's CPU time is the work itself)
    "cpu": time.process_time,
    "wall": time.perf_counter,
}


def run_ms(fn, clock):
    start = clock()
    fn()
    return 1e3 * (clock() - start)


def measure(rows, steps, repeats, shape, clock):
    import diffusers

    noise = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    results, skipped = [], []
    for label, method, cls, config, options in rows:
        if method not in samplers.REGISTRY:
            skipped.append(f"{label}: sampler {method!r} is not registered yet")
            continue
        template = samplers.from_diffusers_config(dict(config, _class_name=cls), steps, method=method, **options)
        scheduler = getattr(diffusers, cls)(**config)
        runs = {
            "ours": lambda: ours_run(template, noise, torch.Generator().manual_seed(1)),
            "diffusers": lambda: diffusers_run(scheduler, noise, steps, torch.Generator().manual_seed(1)),
        }
        for fn in runs.values():  # warm up (imports, caches, allocator)
            fn()
        ours_ms, ref_ms = [], []
        for _ in range(repeats):  # alternate single runs so load changes hit both alike
            ours_ms.append(run_ms(runs["ours"], clock))
            ref_ms.append(run_ms(runs["diffusers"], clock))
        ratios = [a / b for a, b in zip(ours_ms, ref_ms)]
        results.append(dict(label=label, method=method, cls=cls, nfe=template.nfe, ours=statistics.median(ours_ms),
                            ref=statistics.median(ref_ms), ratio=statistics.median(ratios),
                            best=min(ours_ms) / min(ref_ms)))
    return results, skipped


def table(results, skipped, steps, shape, threads, clock):
    lines = [f"Sampler overhead, {steps} steps, tensor {'x'.join(map(str, shape))}, model `x * 0.1`, "
             f"torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs "
             f"({platform.machine()}), {clock} time.",
             "Time per full run (median ms); ratio = median over alternating pairs of ours / diffusers "
             "(target <= 0.8); best = fastest ours / fastest diffusers. Ours includes the driver's work per "
             "evaluation (finiteness check of the output, x0/eps conversion, a Step record).", "",
             "| sampler | ours | diffusers class | NFE | ours ms | diffusers ms | ratio | best | target |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ok = "met" if r["ratio"] <= TARGET else "MISSED"
        lines.append(f"| {r['label']} | `{r['method']}` | {r['cls']} | {r['nfe']} | {r['ours']:.2f} | "
                     f"{r['ref']:.2f} | {r['ratio']:.2f} | {r['best']:.2f} | {ok} |")
    for s in skipped:
        lines.append(f"\nSkipped: {s}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=40, help="runs of each (alternating)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: this process's CPU time (robust on a shared machine); wall: elapsed time")
    parser.add_argument("--only", nargs="*", help="row labels or method names to run")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = [r for r in ROWS if not args.only or r[0] in args.only or r[1] in args.only]
    shape = (1, 3, 32, 32)
    results, skipped = measure(rows, args.steps, args.repeats, shape, CLOCKS[args.clock])
    text = table(results, skipped, args.steps, shape, args.threads, args.clock)
    print(text)
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "overhead.md")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
    return results


if __name__ == "__main__":
    main()
