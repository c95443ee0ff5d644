"""Train the embedded default model: a small class-conditional UNet on the 32x32 emoji set.

    python scripts/train_default_model.py --workdir /tmp/emoji-train --bf16       # CPU, until stopped
    python scripts/train_default_model.py --workdir W --device cuda --bf16 --batch-size 128 --max-steps 40000 --decay-steps 10000
    python scripts/train_default_model.py --workdir W --resume                     # continue a run

What makes a 5 M-parameter model learn in a few thousand CPU iterations:
- v-prediction (v = alpha eps - sigma x0) with min-SNR-5 loss weighting (Hang et al. 2023);
- the exact posterior-mean target: for a finite training set the ideal denoiser
  E[x0 | x_t, y] = sum_i softmax_i(-|x_t - alpha x_i|^2 / (2 sigma^2) + log p_i) x_i is cheap to
  compute (two [batch x N x 3072] matmuls), so the regression target is E[v | x_t] instead of
  the single-sample v.  Same minimiser, far less target noise at high noise levels;
- class-balanced batches (People & Body is 60% of the images), labels dropped 10% of the time
  to the null label (num_class_embeds - 1) for classifier-free guidance;
- AdamW with linear warm-up, gradient clipping, an EMA of the weights (exported).

Writes to --workdir: checkpoint.pt (resume), samples/step_XXXXXX.png, train_log.csv.
Exports the EMA weights (fp16) with save_pretrained to --out (default assets/emoji-unet)
every --export-minutes and at the end, with LICENSE.txt and a README.md model card.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import samplers  # noqa: E402
from models.loading import save_pretrained  # noqa: E402
from models.unet import UNet2DModel  # noqa: E402
from samplers.schedule import NoiseSchedule  # noqa: E402

# 5.2 M parameters; ~20 ms per batch-1 forward on 2 CPU cores (bench/default_model.py).
# Most compute sits at 32x32, so the first level is narrow; attention only at 8x8 and in the
# 4x4 middle, where it is cheap.
UNET_CONFIG = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [32, 64, 96, 128],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "attention_head_dim": 32,
    "norm_num_groups": 16,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "dropout": 0.0,
}

SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "variance_type": "fixed_small",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "prediction_type": "v_prediction",
    "thresholding": False,
    # Trailing starts sampling at t = T-1 (leading never does; Lin et al.).
    "timestep_spacing": "trailing",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}

MIN_SNR_GAMMA = 5.0
SAMPLE_GUIDANCE = 1.0   # the conditional model alone: larger scales over-saturate this small model


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


PROGRESS_BAR = None   # a tqdm bar while training in a terminal; log lines are written above it


def log(msg: str) -> None:
    line = time.strftime("%H:%M:%S ") + msg
    if PROGRESS_BAR is not None:
        PROGRESS_BAR.write(line)
    else:
        print(line, flush=True)


# --------------------------------------------------------------------------------------------
# data
class EmojiData:
    """Images as a [N, 3072] float matrix in [-1, 1] plus what the exact target needs."""

    def __init__(self, path: Path, device: torch.device):
        if not path.is_file():
            raise FileNotFoundError(f"--data={str(path)!r}: no such file; build it with scripts/build_emoji_dataset.py")
        with np.load(path) as z:
            images, labels, categories = z["images"], z["labels"], [str(c) for c in z["categories"]]
        self.categories = categories
        self.num_classes = len(categories)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        self.shape = tuple(x.shape[1:])
        self.x = x.reshape(len(x), -1).contiguous().to(device)
        self.sq_norms = (self.x.double() ** 2).sum(1).float()
        self.labels = torch.from_numpy(labels).long().to(device)
        counts = np.bincount(labels, minlength=self.num_classes)
        if (counts == 0).any():
            raise ValueError(f"--data={str(path)!r}: class(es) {np.flatnonzero(counts == 0).tolist()} have no images")
        # [C, max count] table of image indices per class, for vectorised class-balanced draws.
        self.members = torch.zeros(self.num_classes, counts.max(), dtype=torch.long)
        for c in range(self.num_classes):
            self.members[c, :counts[c]] = torch.from_numpy(np.flatnonzero(labels == c))
        self.class_sizes = torch.from_numpy(counts).long()
        self.counts = torch.from_numpy(counts).float().to(device)
        # Batches are class-balanced, so the data distribution the model sees gives each image the
        # prior 1 / (C n_class); the unconditional (null-label) posterior must use the same prior.
        self.log_prior = -torch.log(self.num_classes * self.counts)[self.labels]

    def balanced_batch(self, batch: int, gen: torch.Generator):
        """(image indices, classes): a uniform class, then a uniform image of that class."""
        classes = torch.randint(self.num_classes, (batch,), generator=gen)
        sizes = self.class_sizes[classes]
        within = (torch.rand(batch, generator=gen) * sizes).long().clamp(max=sizes - 1)
        device = self.x.device
        return self.members[classes, within].to(device), classes.to(device)

    def posterior_mean(self, xt: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                       labels: torch.Tensor, null_label: int) -> torch.Tensor:
        """E[x0 | x_t, y] over the training set; rows with the null label use every class."""
        flat = xt.reshape(len(xt), -1)
        # -|x - a x_i|^2 / (2 s^2) without the |x|^2 term (constant per row, cancels in softmax).
        cross = flat @ self.x.T                                       # [B, N]
        logits = (alpha[:, None] * cross - 0.5 * alpha[:, None] ** 2 * self.sq_norms[None]) / sigma[:, None] ** 2
        conditional = labels != null_label
        same_class = self.labels[None] == labels[:, None]
        logits = torch.where(conditional[:, None],
                             torch.where(same_class, logits, torch.full_like(logits, -math.inf)),
                             logits + self.log_prior[None])
        weights = torch.softmax(logits, dim=1)
        return (weights @ self.x).reshape(xt.shape)


# --------------------------------------------------------------------------------------------
# model helpers
def build_net(num_classes: int) -> UNet2DModel:
    cfg = dict(UNET_CONFIG, num_class_embeds=num_classes + 1)   # + the null label
    net = UNet2DModel(cfg)
    # Start at v = 0 (x0 estimate = alpha x_t): a sane first guess that keeps early steps stable.
    torch.nn.init.zeros_(net.conv_out.weight)
    torch.nn.init.zeros_(net.conv_out.bias)
    return net


class EMA:
    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = [p.detach().clone() for p in net.parameters()]

    @torch.no_grad()
    def update(self, net: torch.nn.Module, step: int) -> None:
        # Warm-up (as in timm / diffusers EMAModel): short memory while the weights move fast.
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.params, [p.detach() for p in net.parameters()], 1 - d)

    @torch.no_grad()
    def copy_to(self, net: torch.nn.Module) -> torch.nn.Module:
        for p, e in zip(net.parameters(), self.params):
            p.copy_(e)
        return net


def sample_grid(net, categories, scheduler_config, steps: int, guidance: float, per_class: int,
                rows: list[int], seed: int = 0) -> np.ndarray:
    """uint8 [rows*32, per_class*32, 3]: DDIM (eta 0) with classifier-free guidance, one row per class."""
    sampler = samplers.create("ddim", steps=steps, schedule=scheduler_config, prediction_type="v_prediction",
                              spacing=scheduler_config.get("timestep_spacing", "trailing"), clip_sample=True)
    labels = torch.tensor([c for c in rows for _ in range(per_class)], device=net.device)
    gen = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((len(labels), 3, 32, 32), generator=gen).to(net.device)
    model = samplers.guided(net, labels, guidance_scale=guidance)
    with torch.inference_mode():
        x = sampler.sample(model, noise)
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    img = img.reshape(len(rows), per_class, 32, 32, 3).transpose(0, 2, 1, 3, 4)
    return img.reshape(len(rows) * 32, per_class * 32, 3)


def save_png(array: np.ndarray, path: Path, scale: int = 4) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST).save(path)


# --------------------------------------------------------------------------------------------
# export
def model_card(stats: dict) -> str:
    cats = ", ".join(f"{i} = {c}" for i, c in enumerate(stats["categories"]))
    return f"""# emoji-unet: the sampler lab's embedded default model

A class-conditional pixel-space diffusion UNet (diffusers `UNet2DModel` layout) for 32x32 RGB
emoji, trained from scratch by `scripts/train_default_model.py` in this repository.

- Parameters: {stats['params']:,} ({stats['params'] / 1e6:.2f} M), weights stored in float16.
- Prediction: `v_prediction`; schedule: linear betas 1e-4..0.02, T = 1000 (`scheduler_config.json`).
- Classes (`class_labels`): {cats}; {stats['num_classes']} = null label (unconditional, for
  classifier-free guidance). Sample with guidance 1 (the conditional model alone): scales above ~1.25
  over-saturate its pictures and add high-frequency noise as the step count grows.
- Data: {stats['num_images']} Noto Emoji images (Apache-2.0, Google) from the npm package
  emoji-datasource-google@16.0.0, composited on white and downsampled to 32x32
  (`scripts/build_emoji_dataset.py`). See LICENSE.txt.
- Training: {stats['steps']} iterations at batch {stats['batch_size']} (class-balanced, labels dropped
  10%), AdamW lr {stats['lr']:g} with {stats['warmup']} warm-up steps, EMA {stats['ema']}; min-SNR-{MIN_SNR_GAMMA:g}
  weighted v-MSE against the exact posterior-mean target over the training set.
- Hardware: {stats['hardware']}; wall time {stats['train_hours']:.2f} h of training.
- Final loss (EMA of the weighted training loss): {stats['loss']:.4f}.
- Status: {stats['status']}.

Retrain: `{stats['command']}`
"""


def export(net_for_export, ema: EMA, out: Path, stats: dict, license_file: Path) -> None:
    """Write the EMA weights to ``out`` via a temporary folder, so readers never see half a model."""
    ema.copy_to(net_for_export)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pretrained(net_for_export, tmp, scheduler_config=SCHEDULER_CONFIG, dtype=torch.float16)
    os.chmod(tmp / "diffusion_pytorch_model.safetensors", 0o644)  # safetensors writes it 0600
    if license_file.is_file():
        shutil.copyfile(license_file, tmp / "LICENSE.txt")
    (tmp / "README.md").write_text(model_card(stats))
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)


def learning_rate(step: int, args) -> float:
    """Linear warm-up, constant, then (with --decay-steps) a cosine down to --lr-final at --max-steps."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    start = args.max_steps - args.decay_steps
    if args.decay_steps and step >= start:
        progress = min(1.0, (step - start) / args.decay_steps)
        lr = args.lr_final + (lr - args.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    return lr


# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / "assets" / "emoji32.npz"))
    ap.add_argument("--out", default=str(REPO / "assets" / "emoji-unet"), help="export folder")
    ap.add_argument("--workdir", required=True, help="checkpoint, sample grids and log go here")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--bf16", action="store_true", help="mixed precision: the forward pass under bfloat16 autocast")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--decay-steps", type=int, default=0,
                    help="cosine-anneal the learning rate to --lr-final over the last N iterations before "
                         "--max-steps (0: constant after warm-up)")
    ap.add_argument("--lr-final", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--label-drop", type=float, default=0.1)
    ap.add_argument("--exact-target", type=int, default=1, choices=(0, 1),
                    help="1: regress on E[v | x_t] over the training set; 0: on the sampled v")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many iterations (0: no limit)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time (0: no limit)")
    ap.add_argument("--log-seconds", type=float, default=30)
    ap.add_argument("--progress", default="auto", choices=("auto", "bar", "lines"),
                    help="a progress bar (auto: when stderr is a terminal) or a log line every --log-seconds")
    ap.add_argument("--ckpt-minutes", type=float, default=5)
    ap.add_argument("--export-minutes", type=float, default=10)
    ap.add_argument("--sample-minutes", type=float, default=10)
    ap.add_argument("--sample-steps", type=int, default=25, help="DDIM steps of the periodic grids")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from WORKDIR/checkpoint.pt")
    args = ap.parse_args(argv)
    for name in ("batch_size", "warmup", "sample_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if args.decay_steps < 0 or (args.decay_steps and not args.max_steps):
        raise ValueError(f"--decay-steps={args.decay_steps}: must be >= 0, and needs --max-steps to end at")
    if not 0 <= args.label_drop < 1:
        raise ValueError(f"--label-drop={args.label_drop}: must be in [0, 1)")
    if not 0 < args.ema < 1:
        raise ValueError(f"--ema={args.ema}: must be in (0, 1)")
    return args, argv


def main(argv=None):
    global PROGRESS_BAR
    args, _ = parse_args(argv)
    command = "python " + " ".join([os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:]))
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device={args.device!r} but no CUDA GPU is available")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    license_file = Path(args.data).with_name("LICENSE-emoji.txt")

    data = EmojiData(Path(args.data), device)
    null_label = data.num_classes
    net = build_net(data.num_classes).to(device)
    export_net = build_net(data.num_classes).to(device).eval()
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99))
    ema = EMA(net, args.ema)
    gen = torch.Generator("cpu").manual_seed(args.seed)
    schedule = NoiseSchedule.from_config(SCHEDULER_CONFIG)
    abar = torch.tensor(schedule.alphas_cumprod, dtype=torch.float32, device=device)
    T = len(abar)

    step, trained_seconds, loss_avg = 0, 0.0, None
    ckpt_path = workdir / "checkpoint.pt"
    if args.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt_path)!r}")
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        for e, v in zip(ema.params, ck["ema"]):
            e.copy_(v)
        gen.set_state(ck["gen"])
        step, trained_seconds, loss_avg = ck["step"], ck["trained_seconds"], ck["loss_avg"]
        log(f"resumed from {ckpt_path} at step {step} ({trained_seconds / 60:.1f} min trained)")

    hardware = (f"CUDA {torch.cuda.get_device_name(device)}" if device.type == "cuda"
                else f"CPU ({cpu_name()}), {torch.get_num_threads()} thread(s)")
    hardware += ", bf16 autocast" if args.bf16 else ", float32"
    log(f"{n_params / 1e6:.2f} M params, {len(data.x)} images, {data.num_classes} classes, device {device}, "
        f"{hardware}, batch {args.batch_size}, exact target {bool(args.exact_target)}")

    def stats(status):
        return dict(params=n_params, num_classes=data.num_classes, categories=data.categories,
                    num_images=len(data.x), steps=step, batch_size=args.batch_size, lr=args.lr,
                    warmup=args.warmup, ema=args.ema, hardware=hardware, train_hours=trained_seconds / 3600,
                    loss=float("nan") if loss_avg is None else loss_avg, status=status, command=command)

    def save_checkpoint():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(dict(net=net.state_dict(), opt=opt.state_dict(), ema=ema.params, gen=gen.get_state(),
                        step=step, trained_seconds=trained_seconds, loss_avg=loss_avg,
                        unet_config=net.config, scheduler_config=SCHEDULER_CONFIG), tmp)
        os.replace(tmp, ckpt_path)

    def write_samples():
        t0 = time.perf_counter()
        ema.copy_to(export_net)
        rows = list(range(data.num_classes))
        grid = sample_grid(export_net, data.categories, SCHEDULER_CONFIG, args.sample_steps, SAMPLE_GUIDANCE,
                           per_class=4, rows=rows, seed=args.seed)
        path = workdir / "samples" / f"step_{step:06d}.png"
        save_png(grid, path)
        log(f"samples -> {path} ({time.perf_counter() - t0:.1f} s)")

    log_file = open(workdir / "train_log.csv", "a", newline="")
    writer = csv.writer(log_file)
    if log_file.tell() == 0:
        writer.writerow(["step", "trained_seconds", "loss", "loss_avg", "lr", "grad_norm"])

    start = time.perf_counter()
    last = dict(log=start, ckpt=start, export=start, sample=start)
    step_at_log = step
    if args.progress == "bar" or (args.progress == "auto" and sys.stderr.isatty()):
        from tqdm import tqdm   # comes with huggingface_hub

        PROGRESS_BAR = tqdm(total=args.max_steps or None, initial=step, unit="it", dynamic_ncols=True,
                            desc="training")
    net.train()
    while True:
        now = time.perf_counter()
        out_of_time = args.max_minutes and now - start >= 60 * args.max_minutes
        if (args.max_steps and step >= args.max_steps) or out_of_time:
            break
        t_step = time.perf_counter()
        idx, classes = data.balanced_batch(args.batch_size, gen)
        x0 = data.x[idx].reshape(-1, *data.shape)
        t = torch.randint(T, (args.batch_size,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        drop = torch.rand(args.batch_size, generator=gen).to(device) < args.label_drop
        labels = torch.where(drop, torch.full_like(classes, null_label), classes)
        a = abar[t].sqrt()
        s = (1 - abar[t]).sqrt()
        xt = a.view(-1, 1, 1, 1) * x0 + s.view(-1, 1, 1, 1) * noise
        with torch.no_grad():
            target_x0 = data.posterior_mean(xt, a, s, labels, null_label) if args.exact_target else x0
            # v = alpha eps - sigma x0 with eps = (x_t - alpha x0) / sigma, linear in x0.
            v_target = (a.view(-1, 1, 1, 1) * xt - target_x0) / s.view(-1, 1, 1, 1)
        snr = abar[t] / (1 - abar[t])
        weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / (snr + 1)   # min-SNR-gamma, v-prediction form
        # bf16 autocast: convolutions and matmuls in bfloat16 (1.6x faster on an AVX512-BF16 CPU),
        # weights, optimiser state, norms and the loss stay float32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            pred = net(xt, t, class_labels=labels)
        per_sample = ((pred.float() - v_target) ** 2).mean(dim=(1, 2, 3))
        loss = (weight * per_sample).mean()

        lr = learning_rate(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0))
        opt.step()
        ema.update(net, step)
        step += 1
        trained_seconds += time.perf_counter() - t_step
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss is {lv} at step {step}; lower --lr")
        loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
        writer.writerow([step, f"{trained_seconds:.1f}", f"{lv:.5f}", f"{loss_avg:.5f}", f"{lr:.3g}", f"{grad_norm:.3f}"])

        now = time.perf_counter()
        if PROGRESS_BAR is not None:
            PROGRESS_BAR.update(1)
            if step % 10 == 0:
                PROGRESS_BAR.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.1e}", refresh=False)
        if now - last["log"] >= args.log_seconds:
            rate = (step - step_at_log) / (now - last["log"])
            left = f", {args.max_minutes - (now - start) / 60:.1f} min left" if args.max_minutes else ""
            log(f"step {step}  loss {lv:.4f}  avg {loss_avg:.4f}  lr {lr:.2e}  |g| {grad_norm:.2f}  "
                f"{rate:.2f} it/s{left}")
            log_file.flush()
            last["log"], step_at_log = now, step
        if now - last["ckpt"] >= 60 * args.ckpt_minutes:
            save_checkpoint()
            last["ckpt"] = now
        if now - last["sample"] >= 60 * args.sample_minutes:
            write_samples()
            last["sample"] = time.perf_counter()
        if now - last["export"] >= 60 * args.export_minutes:
            export(export_net, ema, out, stats("training in progress (intermediate export)"), license_file)
            log(f"exported EMA weights at step {step} -> {out}")
            last["export"] = time.perf_counter()

    log_file.close()
    if PROGRESS_BAR is not None:
        PROGRESS_BAR.close()
        PROGRESS_BAR = None
    save_checkpoint()
    reason = "time limit" if args.max_minutes and time.perf_counter() - start >= 60 * args.max_minutes else "step limit"
    export(export_net, ema, out, stats(f"finished ({reason})"), license_file)
    log(f"done: {step} steps, {trained_seconds / 60:.1f} min trained, loss avg {loss_avg:.4f}; exported -> {out}")
    write_samples()
    (workdir / "final_stats.json").write_text(json.dumps(stats("finished"), indent=2))


if __name__ == "__main__":
    main()
