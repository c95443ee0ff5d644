"""Forward time of our UNet2DModel vs diffusers' on the same random weights.

google/ddpm-cifar10-32 config (35.7 M parameters). CPU: batch 1 and 8, float32. CUDA (when
available): fp32, fp16, fp16 + channels_last at batch 64, with images/s. Prints markdown tables;
ratio = diffusers time / our time (> 1 means we are faster).

    python bench/unet.py [--repeats N] [--threads N] [--no-cuda] [--no-cpu]
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


def timed(fn, repeats, sync):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(ours, ref, batch, device, dtype, repeats, channels_last=False):
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
        # Interleave so slow phases of a shared machine hit both equally.
        t_ours, t_ref = [], []
        for _ in range(repeats):
            t_ref.append(timed(lambda: ref(x, t), 1, sync))
            t_ours.append(timed(lambda: ours(x, t), 1, sync))
    return statistics.median(t_ours), statistics.median(t_ref), diff


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-cpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if not args.no_cpu:
        cpu = torch.device("cpu")
        ours, ref = build_pair(cpu, torch.float32)
        print(f"## CPU ({torch.get_num_threads()} threads), google/ddpm-cifar10-32 config, float32, torch {torch.__version__}\n")
        print("| batch | ours ms | diffusers ms | ratio (diffusers/ours) | max abs diff |")
        print("|---:|---:|---:|---:|---:|")
        for batch in (1, 8):
            mine, theirs, diff = compare(ours, ref, batch, cpu, torch.float32, args.repeats)
            print(f"| {batch} | {mine * 1e3:.1f} | {theirs * 1e3:.1f} | {theirs / mine:.2f} | {diff:.1e} |", flush=True)
        print()

    if not args.no_cuda and torch.cuda.is_available():
        gpu = torch.device("cuda")
        print(f"## CUDA: {torch.cuda.get_device_name(0)}, batch 64\n")
        print("| setting | ours ms | diffusers ms | ratio (diffusers/ours) | ours images/s | diffusers images/s | max abs diff |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, dtype, cl in (("fp32", torch.float32, False), ("fp16", torch.float16, False),
                                ("fp16 channels_last", torch.float16, True), ("bf16 channels_last", torch.bfloat16, True)):
            ours, ref = build_pair(gpu, dtype)
            mine, theirs, diff = compare(ours, ref, 64, gpu, dtype, max(args.repeats, 20), channels_last=cl)
            print(f"| {name} | {mine * 1e3:.2f} | {theirs * 1e3:.2f} | {theirs / mine:.2f} | {64 / mine:.0f} | "
                  f"{64 / theirs:.0f} | {diff:.1e} |", flush=True)
            del ours, ref
            torch.cuda.empty_cache()
    elif not args.no_cuda:
        print("(no CUDA GPU available: GPU figures not measured)")


if __name__ == "__main__":
    main()
