"""Forward time of our UNet2DModel vs diffusers' on the same random weights.

google/ddpm-cifar10-32 config (35.7 M parameters). CPU: batch 1 and 8, float32, NCHW and
channels_last, 1 thread and torch's default; wall time and process CPU time. CUDA (when
available): fp32, fp16, fp16/bf16 + channels_last at batch 64, with images/s. Prints markdown
tables; ratio = diffusers time / our time (> 1 means we are faster).

    python bench/unet.py [--repeats N] [--threads N] [--no-cuda] [--no-cpu]

The two networks run alternately and the median of each is reported, so a busy shared
machine slows both alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.unet import UNet2DModel  # noqa: E402

CIFAR10_CONFIG = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def build_pair(device, dtype):
    from diffusers import UNet2DModel as DiffusersUNet

    torch.manual_seed(0)
    ref = DiffusersUNet(**{k: v for k, v in CIFAR10_CONFIG.items() if not k.startswith("_")})
    ours = UNet2DModel(CIFAR10_CONFIG)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref = ref.to(device, dtype).eval().requires_grad_(False)
    ours = ours.to(device, dtype).eval().requires_grad_(False)
    return ours, ref


def timed(fn, sync):
    """(wall seconds, process CPU seconds) of one call."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(ours, ref, batch, device, dtype, repeats, channels_last=False):
    """Median (wall, cpu) seconds of ours and of diffusers, and their max abs output difference."""
    x = torch.randn(batch, 3, 32, 32, device=device, dtype=dtype)
    t = torch.full((batch,), 500.0, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        ours = ours.to(memory_format=torch.channels_last)
        ref = ref.to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        diff = (ours(x, t).float() - ref(x, t).sample.float()).abs().max().item()
        for _ in range(2):  # warm-up (allocator, kernel selection)
            ours(x, t), ref(x, t)
        # Alternate the two so slow phases of a shared machine hit both alike.
        mine, theirs = [], []
        for _ in range(repeats):
            theirs.append(timed(lambda: ref(x, t), sync))
            mine.append(timed(lambda: ours(x, t), sync))
    median = lambda rows, i: statistics.median(r[i] for r in rows)
    return (median(mine, 0), median(mine, 1)), (median(theirs, 0), median(theirs, 1)), diff


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="only this many CPU threads (default: 1 and torch's default)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-cpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if not args.no_cpu:
        cpu = torch.device("cpu")
        default_threads = torch.get_num_threads()
        thread_counts = [args.threads] if args.threads else sorted({1, default_threads})
        print(f"## CPU, google/ddpm-cifar10-32 config, float32, torch {torch.__version__}\n")
        print("ratio = diffusers / ours (> 1: ours faster). CPU time = process time, robust to other load on a "
              "shared machine when threads = 1.\n")
        print("| batch | threads | layout | ours ms | diffusers ms | wall ratio | ours CPU ms | diffusers CPU ms | "
              "CPU-time ratio | max abs diff |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for channels_last in (False, True):
                ours, ref = build_pair(cpu, torch.float32)
                for batch in (1, 8):
                    (w_ours, c_ours), (w_ref, c_ref), diff = compare(ours, ref, batch, cpu, torch.float32,
                                                                     args.repeats, channels_last)
                    layout = "channels_last" if channels_last else "NCHW"
                    print(f"| {batch} | {threads} | {layout} | {w_ours * 1e3:.1f} | {w_ref * 1e3:.1f} | "
                          f"{w_ref / w_ours:.2f} | {c_ours * 1e3:.1f} | {c_ref * 1e3:.1f} | {c_ref / c_ours:.2f} | "
                          f"{diff:.1e} |", flush=True)
        torch.set_num_threads(default_threads)
        print()

    if not args.no_cuda and torch.cuda.is_available():
        gpu = torch.device("cuda")
        print(f"## CUDA: {torch.cuda.get_device_name(0)}, batch 64\n")
        print("| setting | ours ms | diffusers ms | ratio (diffusers/ours) | ours images/s | diffusers images/s | max abs diff |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, dtype, cl in (("fp32", torch.float32, False), ("fp16", torch.float16, False),
                                ("fp16 channels_last", torch.float16, True), ("bf16 channels_last", torch.bfloat16, True)):
            ours, ref = build_pair(gpu, dtype)
            (mine, _), (theirs, _), diff = compare(ours, ref, 64, gpu, dtype, max(args.repeats, 20), channels_last=cl)
            print(f"| {name} | {mine * 1e3:.2f} | {theirs * 1e3:.2f} | {theirs / mine:.2f} | {64 / mine:.0f} | "
                  f"{64 / theirs:.0f} | {diff:.1e} |", flush=True)
            del ours, ref
            torch.cuda.empty_cache()
    elif not args.no_cuda:
        print("(no CUDA GPU available: GPU figures not measured)")


if __name__ == "__main__":
    main()
