"""Draw the default model's sample grid: assets/samples.png.

    python scripts/make_samples_grid.py                       # assets/emoji-unet -> assets/samples.png
    python scripts/make_samples_grid.py --model /path/to/export --out /tmp/grid.png --seed 3

One row per category (default: Smileys & Emotion, Animals & Nature, Food & Drink, Flags),
`--per-row` samples each, deterministic DDIM (eta 0) with classifier-free guidance, upscaled
with nearest-neighbour so single pixels stay visible.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import samplers  # noqa: E402
from models import load  # noqa: E402

DEFAULT_ROWS = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Flags")


def read_categories(data: Path) -> list[str]:
    if not data.is_file():
        raise FileNotFoundError(f"--data={str(data)!r}: no such file (it names the model's classes)")
    with np.load(data) as z:
        return [str(c) for c in z["categories"]]


def draw(net, labels: list[int], steps: int, guidance: float, seed: int) -> torch.Tensor:
    """Images in [-1, 1], one per label; sample i uses noise from generator seed + i."""
    sampler = samplers.from_diffusers_config(net.scheduler_config, steps, method="ddim", eta=0.0)
    noise = torch.cat([torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(seed + i))
                       for i in range(len(labels))]).to(net.device, net.dtype)
    model = samplers.guided(net, torch.tensor(labels, device=net.device), guidance_scale=guidance)
    with torch.inference_mode():
        return sampler.sample(model, noise).float().clamp(-1, 1)


def to_grid(images: torch.Tensor, rows: int, scale: int) -> Image.Image:
    arr = ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, c = arr.shape
    cols = n // rows
    arr = arr.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    im = Image.fromarray(arr)
    return im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "assets" / "emoji-unet"), help="export folder (or 'default')")
    ap.add_argument("--data", default=str(REPO / "assets" / "emoji32.npz"), help="for the category names")
    ap.add_argument("--out", default=str(REPO / "assets" / "samples.png"))
    ap.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), help="category names, one row each")
    ap.add_argument("--per-row", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=1.0, help="1: the conditional model alone (best here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.per_row < 1 or args.scale < 1:
        raise ValueError(f"--per-row={args.per_row} and --scale={args.scale} must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    categories = read_categories(Path(args.data))
    unknown = [r for r in args.rows if r not in categories]
    if unknown:
        raise ValueError(f"--rows {unknown}: unknown categories; allowed: {categories}")
    net = load(args.model, device="cpu")
    labels = [categories.index(r) for r in args.rows for _ in range(args.per_row)]
    start = time.perf_counter()
    images = draw(net, labels, args.steps, args.guidance, args.seed)
    seconds = time.perf_counter() - start
    grid = to_grid(images, len(args.rows), args.scale)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"{args.out}: {len(labels)} samples, {args.steps} DDIM steps, guidance {args.guidance}, "
          f"{seconds:.1f} s; rows: {', '.join(args.rows)}")


if __name__ == "__main__":
    main()
