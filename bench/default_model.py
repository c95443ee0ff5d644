"""CPU cost of the embedded default model (assets/emoji-unet): what a 2-vCPU Space will see.

Rows: forward pass at batch 1 (one unguided evaluation), at batch 2 (one guided evaluation:
conditional + unconditional rows together), and a whole 20-step DDIM sample with and without
classifier-free guidance. The ideal-denoiser twin (exact posterior mean over the 3,781
training images) is timed alongside when it loads. Medians over --repeats runs.

    python bench/default_model.py [--threads 1 2] [--repeats 20] [--model assets/emoji-unet]

One column per thread count. On a machine that other processes keep busy, 2 threads can be
many times slower than 1 (the threads wait on each other at every op), so both are shown.
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
from models import load  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample_seconds(net, steps: int, guidance: float, repeats: int) -> float:
    sampler = samplers.from_diffusers_config(net.scheduler_config, steps, method="ddim", eta=0.0)
    label = torch.tensor([0])
    model = samplers.guided(net, label, guidance_scale=guidance) if guidance != 1.0 else (
        lambda x, t: net(x, t, class_labels=label))
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return median_seconds(lambda: sampler.sample(model, noise), repeats, warmup=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(REPO, "assets", "emoji-unet"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sample-repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.threads):
        raise ValueError(f"--threads={args.threads}: thread counts must be >= 1")

    net = load(args.model, device="cpu")
    params = sum(p.numel() for p in net.parameters())
    size_mb = os.path.getsize(os.path.join(args.model, "diffusion_pytorch_model.safetensors")) / 1e6
    print(f"model {args.model}: {params / 1e6:.2f} M parameters, weights file {size_mb:.1f} MB; "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start\n")
    try:
        twin = load("ideal-emoji")
    except (ValueError, FileNotFoundError, ImportError, AttributeError) as err:
        twin = None
        print(f"ideal-denoiser twin not timed: {err}")

    names, columns = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        values = []
        names.clear()
        with torch.inference_mode():
            for batch in (1, 2):
                x = torch.randn(batch, 3, 32, 32)
                t = torch.full((batch,), 500.0)
                y = torch.zeros(batch, dtype=torch.long)
                names.append(f"UNet forward, batch {batch}" + (" (= one guided step)" if batch == 2 else ""))
                values.append(f"{1000 * median_seconds(lambda: net(x, t, class_labels=y), args.repeats):.1f} ms")
            for guidance in (1.0, 3.0):
                what = "no guidance" if guidance == 1.0 else f"guidance {guidance:g}"
                names.append(f"{args.steps}-step DDIM sample, 1 image, {what}")
                values.append(f"{sample_seconds(net, args.steps, guidance, args.sample_repeats):.2f} s")
            if twin is not None:
                x = torch.randn(1, 3, 32, 32)
                names.append("ideal-denoiser twin forward, batch 1")
                values.append(f"{1000 * median_seconds(lambda: twin(x, torch.tensor([500.0])), args.repeats):.1f} ms")
        columns.append(values)

    print("| measurement (median) | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in args.threads) + " |")
    print("|---|" + "---|" * len(args.threads))
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(col[i] for col in columns) + " |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
