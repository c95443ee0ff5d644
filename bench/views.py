"""What the explanatory views cost next to the work they show (the issue: "a plot update must not slow
the stream").

1. The per-run trace under Generate: the per-step copy (``lab.Tracer.add``) against one network
   call of the default model, and the end-of-run trace (numbers, thumbnails, strip, plot frames).
2. Gradio's per-update work for /generate's streamed updates with the trace outputs (held empty
   until the end) against the five outputs it had before.
3. Error vs steps: building one update (plot frame, colours, table) against one run of the curve.
4. 2-D: re-drawing the picture at a slider position (no model call) and the whole computation.
5. Network vs training set: the nearest-training-image search (both runs' images against the 3,781
   training images) and the comparison picture, against the two sampler runs they follow.

CPU time of this process is the clock (other processes on a shared machine do not count).
Prints a markdown table and writes bench/results/views.md.

    python bench/views.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import lab  # noqa: E402


def cpu_ms(fn, repeats: int) -> float:
    """Median process CPU time of fn() in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def trace_costs(limits, repeats):
    request = lab.parse_generate(dict(model="default", sampler="unipc", steps=20, seed=0, num_images=1), limits)
    steps, progress = [], None
    prepared = lab.prepare(request.model, 1, request.cond, limits)
    sampler = lab.build_sampler(prepared.info, request.setup, request.cond, limits)
    noise, generator = lab.make_noise(0, 1, prepared.info.event_shape)
    with torch.no_grad():
        steps = list(sampler.run(prepared.model, noise, generator))
        x, t = steps[5].x, torch.full((1,), float(steps[5].t))
        network = cpu_ms(lambda: prepared.model(x, t), repeats)
    tracer = lab.Tracer(prepared.info.kind)
    add = cpu_ms(lambda: tracer.add(steps[5]), repeats * 10)
    full = lab.Tracer(prepared.info.kind)
    for s in steps:
        full.add(s)

    import app
    end = cpu_ms(lambda: app.trace_outputs(full.result()), repeats)
    for progress in lab.generate(request, limits):
        pass
    return network, add, end, progress


def update_costs(repeats):
    import app
    from gradio.state_holder import SessionState

    demo = app.build_app(lab.Limits())
    fn = next(f for f in demo.fns.values() if f.api_name == "generate")
    state = SessionState(demo)
    preview = lab.PreviewFile().update(torch.zeros(64, 128, 3, dtype=torch.uint8).numpy())
    streamed = [preview, "step 1/20", None, None, None, *app.TRACE_WHILE_RUNNING]
    outputs = list(fn.outputs)

    def postprocess(values, count):
        fn.outputs = outputs[:count]
        asyncio.run(demo.postprocess_data(fn, values[:count], state))

    with_trace = cpu_ms(lambda: postprocess(streamed, len(outputs)), repeats * 5)
    without = cpu_ms(lambda: postprocess(streamed, 5), repeats * 5)
    fn.outputs = outputs
    return with_trace, without


def error_costs(limits, repeats):
    import views.errors as errors

    values = dict(model="default", seed=0, num_images=1, nfe="5, 10, 20", sampler_1="ddim", spacing_1="logsnr",
                  sampler_2="unipc", order_2=3, spacing_2="logsnr")
    start = time.process_time()
    found = None
    for found, _ in errors.rows(values, limits):
        pass
    whole = (time.process_time() - start) * 1e3
    runs = len(found)
    build = cpu_ms(lambda: errors.frames(found), repeats)
    return whole / runs, build, runs


def teaching_costs(limits, repeats):
    import views.teaching as teaching

    values = dict(model="mixture-2d", sampler_1="ddim", steps_1=10, spacing_1="trailing", sampler_2="unipc",
                  steps_2=5, spacing_2="trailing", sampler_3="euler", steps_3=5, spacing_3="trailing", points=16)
    start = time.process_time()
    data = teaching.rows(values, limits)
    whole = (time.process_time() - start) * 1e3
    middle = len(data["timeline"]) // 2
    return whole, cpu_ms(lambda: teaching.render(data, middle), repeats)


def training_set_costs(limits, repeats):
    import views.training_set as training_set

    values = dict(model="default", sampler="ddim", steps=20, seed=0, num_images=4, class_label="Flags")
    start = time.process_time()
    *_, (_, _, result) = training_set.rows(values, limits)
    whole = (time.process_time() - start) * 1e3
    twin = lab.load_model("ideal-emoji", limits)[0]
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    pictures = lab.to_uint8(images)

    def compare():
        twin.nearest(images)
        twin.nearest(images)
        training_set.comparison(pictures, pictures, pictures, result["rows"])

    return whole, cpu_ms(compare, repeats)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "views.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    limits = lab.Limits()

    network, add, end, progress = trace_costs(limits, args.repeats)
    with_trace, without = update_costs(args.repeats)
    per_run, build, runs = error_costs(limits, max(3, args.repeats // 4))
    teaching_whole, render = teaching_costs(limits, args.repeats)
    training_whole, nearest = training_set_costs(limits, args.repeats)

    rows = [
        ("trace: copy of one step (Tracer.add)", add, f"{add / network:.1%} of one network call ({network:.1f} ms)"),
        ("trace: end of run (numbers, 11 thumbnails, strip, plot frames)", end,
         f"once per run; {end / (20 * network):.1%} of the 20-step run's network time"),
        ("Gradio postprocess of one streamed /generate update, 10 outputs", with_trace,
         f"+{with_trace - without:.2f} ms vs the 5 outputs without the trace ({without:.2f} ms); "
         f"{(with_trace - without) / network:.1%} of a network call"),
        ("error vs steps: one plot + table update", build,
         f"{build / per_run:.2%} of one run of the curve ({per_run:.0f} ms on average over {runs} runs)"),
        ("2-D: re-draw at a slider position (no model call)", render,
         f"the whole /teaching computation: {teaching_whole:.0f} ms"),
        ("network vs training set: nearest training images of 2 x 4 pictures + the comparison picture", nearest,
         f"{nearest / (training_whole - nearest):.1%} of the two 20-step runs of 4 images "
         f"({training_whole - nearest:.0f} ms)"),
    ]
    lines = ["# What the views cost", "",
             f"Default model (`{progress.info['model_loaded'] if progress and progress.info else 'default'}`), "
             f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with 1 thread; process CPU "
             f"time, median of {args.repeats} repeats. `python bench/views.py`", "",
             "| what | ms | relative to the work it shows |", "|---|---|---|"]
    lines += [f"| {what} | {ms:.2f} | {note} |" for what, ms, note in rows]
    lines += ["", "Target: a plot update must not slow the stream. The trace is drawn once, when the run ends; "
              "while it streams the sampler only copies image #0 (shrunk to 64 px at most) per step."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
