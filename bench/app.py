"""What the app adds on top of the network: streaming overhead and batched comparisons.

On the embedded default model (or its fallback, ideal-emoji, while assets/emoji-unet is missing):

1. A 20-step DDIM run with the page's defaults, timed three ways: 20 bare calls of the same
   model function on the same inputs; ``lab.generate`` (sampler, previews, PNG pixels); and the
   real app launched in-process and called with ``gradio_client`` (queue, JPEG previews, SSE).
   Reported: time to the first preview and in total; overhead = total / bare - 1 (target < 10%).
2. A 4-sampler comparison (20 steps each): ``lab.compare`` (one batched forward pass per
   round) against the same four set-ups run one after another (target: batched <= 0.5x).

The variants run interleaved and the median of each is reported, so a busy shared machine
slows all of them alike. Prints a markdown table and writes bench/results/app.md.

    python bench/app.py [--repeats 5] [--threads N] [--model default]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import lab  # noqa: E402
import samplers  # noqa: E402

STEPS = 20
COMPARE_SAMPLERS = ("ddim", "unipc", "ipndm", "euler", "plms", "ddpm")
NETWORK_SECONDS = [0.0]   # time spent inside network calls, summed over every run in this process


def timed_model_function(*args):
    """lab.model_function, with the time inside the network counted: overhead = total - network,
    measured within the same run, so load from other processes shifts both alike."""
    fn = _model_function(*args)

    def model(x, t):
        start = time.perf_counter()
        try:
            return fn(x, t)
        finally:
            NETWORK_SECONDS[0] += time.perf_counter() - start
    return model


_model_function = lab.runs.model_function
lab.runs.model_function = timed_model_function   # prepare() looks it up there


def fresh(fn, *args):
    """fn(*args) in a new thread, as the app runs each sampling run (lab.in_background). On this
    shared machine a 2-thread torch forward pass was measured up to 20x slower in a long-lived
    thread (the main one) than in a fresh one, so every variant gets the app's conditions."""
    out = []

    def target():
        try:
            out.append((True, fn(*args)))
        except BaseException as exc:  # re-raised in the caller
            out.append((False, exc))

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def network_share(run):
    """(result of run() in a fresh thread, seconds of it spent in the network)."""
    before = NETWORK_SECONDS[0]
    result = fresh(run)
    return result, NETWORK_SECONDS[0] - before


def bare_calls(prepared, sampler, noise) -> float:
    """The network alone: one call per grid time, on inputs of the run's shape."""
    x = noise.clone()
    start = time.perf_counter()
    for t in sampler.timesteps:
        prepared.model(x, torch.full((x.shape[0],), float(t)))
    return time.perf_counter() - start


def runner_run(request, limits) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    for p in lab.generate(request, limits):
        if first is None and p.preview is not None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def server_run(client, values) -> dict:
    """One /generate call through the app: first preview and total as the client sees them, split
    into waiting for the run to start, the run itself, and delivering the result after it."""
    start_wall, start = time.time(), time.perf_counter()
    job = client.submit(api_name="/generate", **values)
    first = None
    for out in job:   # blocks until the next streamed update arrives
        if first is None and out[0] and not (isinstance(out[0], dict) and out[0].get("__type__") == "update"):
            first = time.perf_counter() - start
    job.result()
    total, end_wall = time.perf_counter() - start, time.time()
    record = [r for r in lab.RUNS if r.kind == "generate"][-1]
    return {"first": first if first is not None else total, "total": total,
            "queue": record.started - start_wall, "run": record.finished - record.started,
            "delivery": end_wall - record.finished}


def network_batching(prepared, noise, count) -> tuple[float, float]:
    """The network alone: one call on count stacked inputs vs count separate calls (the best batching can do)."""
    t = torch.full((noise.shape[0],), 500.0)
    start = time.perf_counter()
    for _ in range(count):
        prepared.model(noise, t)
    separate = time.perf_counter() - start
    stacked, ts = torch.cat([noise] * count), torch.cat([t] * count)
    start = time.perf_counter()
    prepared.model(stacked, ts)
    return time.perf_counter() - start, separate


def compare_batched(request, limits) -> float:
    start = time.perf_counter()
    for _ in lab.compare(request, limits):
        pass
    return time.perf_counter() - start


def compare_sequential(request, limits) -> float:
    start = time.perf_counter()
    for spec in request.setups:
        solo = lab.GenerateRequest(request.model, spec, request.seed, request.num_images, request.cond)
        for _ in lab.generate(solo, limits):
            pass
    return time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "app.md"))
    args = ap.parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats={args.repeats}: must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    limits = lab.Limits.from_env()
    values = {"model": args.model, "sampler": "ddim", "steps": STEPS, "seed": 0}
    request = lab.parse_generate(values, limits)
    prepared = lab.prepare(request.model, 1, request.cond, limits)
    info = prepared.info
    sampler = lab.build_sampler(info, request.setup, request.cond, limits)
    noise, _ = lab.make_noise(0, 1, info.event_shape, info.device)

    import app
    from gradio_client import Client
    from tests.app_helpers import launch

    demo = app.build_app(limits)
    client = Client(launch(demo), verbose=False, download_files=False)

    names = [n for n in COMPARE_SAMPLERS if n in samplers.REGISTRY][:4]
    cmp_request = lab.parse_compare({"model": args.model, "seed": 0, "num_images": 1,
                                        "setups": [{"sampler": n, "steps": STEPS} for n in names]}, limits)
    # warm-up: load the model, first-call allocations, the server's first request
    bare_calls(prepared, sampler, noise)
    runner_run(request, limits)
    server_run(client, values)
    compare_batched(cmp_request, limits)

    rows = {k: [] for k in ("bare", "runner_first", "runner_total", "runner_overhead", "server_first",
                            "server_total", "server_overhead", "server_queue", "server_run",
                            "server_run_overhead", "server_delivery", "batched", "sequential", "net_stacked",
                            "net_separate")}
    for _ in range(args.repeats):
        rows["bare"].append(fresh(bare_calls, prepared, sampler, noise))
        (first, total), network = network_share(lambda: runner_run(request, limits))
        rows["runner_first"].append(first)
        rows["runner_total"].append(total)
        rows["runner_overhead"].append(total / network - 1)
        served, network = network_share(lambda: server_run(client, values))
        rows["server_first"].append(served["first"])
        rows["server_total"].append(served["total"])
        rows["server_overhead"].append(served["total"] / network - 1)
        rows["server_queue"].append(served["queue"])
        rows["server_run"].append(served["run"])
        rows["server_run_overhead"].append(served["run"] / network - 1)
        rows["server_delivery"].append(served["delivery"])
        rows["batched"].append(fresh(compare_batched, cmp_request, limits))
        rows["sequential"].append(fresh(compare_sequential, cmp_request, limits))
        for _ in range(3):
            stacked, separate = fresh(network_batching, prepared, noise, len(names))
            rows["net_stacked"].append(stacked)
            rows["net_separate"].append(separate)
    demo.close()
    med = {k: statistics.median(v) for k, v in rows.items()}

    resolved = prepared.resolved
    rows_per_call = noise.shape[0] * (2 if info.guidance and resolved.guidance_scale != 1.0 else 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# App overhead and batched comparison",
        "",
        f"Model: `{info.loaded}`" + (f" (asked for `{args.model}`; {info.notice})" if info.notice else "") +
        f", class {resolved.class_label!r}, guidance {resolved.guidance_scale:g} ({rows_per_call} row(s) per "
        f"network call). {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} with {torch.get_num_threads()} thread(s); load average {load:.1f} when run. "
        f"Median of {args.repeats} interleaved repeats. `python bench/app.py`",
        "",
        f"## One {STEPS}-step DDIM run (1 image)",
        "",
        "| what | first preview (s) | total (s) | vs 20 bare calls | overhead within the run |",
        "|---|---|---|---|---|",
        f"| {STEPS} bare network calls | | {med['bare']:.3f} | 1.00 | |",
        f"| `lab.generate` (sampling, previews, PNG pixels) | {med['runner_first']:.3f} | "
        f"{med['runner_total']:.3f} | {med['runner_total'] / med['bare']:.2f} | {med['runner_overhead']:+.1%} |",
        f"| the app via `gradio_client` (queue, JPEG previews, streaming) | {med['server_first']:.3f} | "
        f"{med['server_total']:.3f} | {med['server_total'] / med['bare']:.2f} | {med['server_overhead']:+.1%} |",
        (f"| of which: the run itself, while it streams every step (server side) | | {med['server_run']:.3f} | | "
         f"{med['server_run_overhead']:+.1%} |"),
        f"| of which: queue and start of the run | | {med['server_queue']:.3f} | | |",
        f"| of which: delivering the final result after the run | | {med['server_delivery']:.3f} | | |",
        "",
        ("Overhead within the run = time / (time inside the network during that same run) - 1: the part "
         "that is not the network, immune to other processes' load shifting between runs. Every variant "
         "runs in a fresh thread, as the app runs each request."),
        "",
        f"## {len(names)}-sampler comparison, {STEPS} steps each ({', '.join(names)})",
        "",
        "| what | total (s) | ratio |",
        "|---|---|---|",
        f"| one after another (`lab.generate` x {len(names)}) | {med['sequential']:.3f} | 1.00 |",
        f"| batched (`lab.compare`, one forward pass per round) | {med['batched']:.3f} | "
        f"{med['batched'] / med['sequential']:.2f}x |",
        f"| the network alone: one call on {len(names)} stacked inputs vs {len(names)} calls (the bound for "
        f"batching on this machine) | {med['net_stacked']:.3f} vs {med['net_separate']:.3f} | "
        f"{med['net_stacked'] / med['net_separate']:.2f}x |",
        "",
        "Targets: overhead of streaming and sampling under 10%; batched at most 0.5x the sequential time.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
