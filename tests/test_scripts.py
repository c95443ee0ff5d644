"""scripts/: the emoji dataset builder and the default model's trainer, on tiny synthetic data (no network)."""
from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_script("build_emoji_dataset")
trainer = load_script("train_default_model")


def png(rgba: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


def fake_tarball(path: Path) -> None:
    """An emoji-datasource-google tarball in miniature: emoji.json and 64x64 RGBA images."""
    corner = np.zeros((64, 64, 4), np.uint8)          # transparent, one opaque red 2x2 block top-left
    corner[:2, :2] = (255, 0, 0, 255)
    solid = np.full((64, 64, 4), (0, 0, 255, 255), np.uint8)
    meta = [
        {"category": "Smileys & Emotion", "has_img_google": True, "image": "grin.png", "short_name": "grin"},
        {"category": "People & Body", "has_img_google": True, "image": "wave.png", "short_name": "wave",
         "skin_variations": {"1F3FC": {"image": "wave-2.png", "has_img_google": False},
                             "1F3FB": {"image": "wave-1.png", "has_img_google": True}}},
        {"category": "Component", "has_img_google": True, "image": "tone.png", "short_name": "tone"},
        {"category": "Flags", "has_img_google": True, "image": "gone.png", "short_name": "gone"},
    ]
    files = {"package/emoji.json": json.dumps(meta).encode(), builder.IMAGE_DIR + "grin.png": png(corner),
             builder.IMAGE_DIR + "wave.png": png(solid), builder.IMAGE_DIR + "wave-1.png": png(solid),
             builder.IMAGE_DIR + "tone.png": png(solid)}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_dataset_builder_composites_on_white_box_filters_to_32_px_and_keeps_skin_tone_variants(tmp_path):
    fake_tarball(tmp_path / "emoji.tgz")
    builder.main(["--tarball", str(tmp_path / "emoji.tgz"), "--out", str(tmp_path / "emoji32.npz")])
    with np.load(tmp_path / "emoji32.npz") as z:
        images, labels, names, categories = z["images"], z["labels"], list(z["names"]), list(z["categories"])
    # Component (skin swatches) is not a class; an image missing from the tarball is skipped with a warning
    assert names == ["grin", "wave", "wave:1f3fb"] and labels.tolist() == [0, 1, 1]
    assert categories == list(builder.CATEGORIES) and images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert images[0, 0, 0].tolist() == [255, 0, 0]              # the 2x2 red block is exactly one pixel
    assert images[0, 0, 1].tolist() == [255, 255, 255]          # transparent -> white, no ringing
    assert (images[1] == (0, 0, 255)).all()
    assert "Apache" in (tmp_path / "LICENSE-emoji.txt").read_text()


def tiny_dataset(path: Path, per_class=(6, 2, 3), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    np.savez(path, images=images, labels=labels, categories=np.asarray(["a", "b", "c"][:len(per_class)]))
    return path


def brute_force_posterior_mean(data, xt, alpha, sigma, labels, null_label):
    """E[x0 | x_t, y] by the definition, in float64: p(x_i | x_t) ~ prior_i N(x_t; alpha x_i, sigma^2 I)."""
    x = data.x.double()
    out = []
    for row, a, s, y in zip(xt.reshape(len(xt), -1).double(), alpha.double(), sigma.double(), labels):
        log_w = -((row[None] - a * x) ** 2).sum(1) / (2 * s * s)
        if y == null_label:       # every image, each class equally likely (batches are class-balanced)
            log_w = log_w - torch.log(data.counts.double()[data.labels])
        else:
            log_w = torch.where(data.labels == y, log_w, torch.full_like(log_w, -torch.inf))
        out.append(torch.softmax(log_w, 0) @ x)
    return torch.stack(out).reshape(xt.shape)


def test_the_exact_training_target_is_the_posterior_mean_over_the_training_set(tmp_path):
    data = trainer.EmojiData(tiny_dataset(tmp_path / "d.npz"), torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    idx, classes = data.balanced_batch(8, gen)
    alpha = torch.tensor([0.99, 0.9, 0.7, 0.5, 0.3, 0.1, 0.05, 0.8])
    sigma = (1 - alpha ** 2).sqrt()
    x0 = data.x[idx].reshape(-1, *data.shape)
    xt = alpha.view(-1, 1, 1, 1) * x0 + sigma.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=gen)
    labels = torch.where(torch.arange(8) % 3 == 0, torch.full_like(classes, 3), classes)   # some unconditional
    got = data.posterior_mean(xt, alpha, sigma, labels, null_label=3)
    want = brute_force_posterior_mean(data, xt, alpha, sigma, labels, 3)
    assert torch.allclose(got.double(), want, atol=1e-4), (got.double() - want).abs().max()


def test_batches_are_class_balanced_although_the_classes_are_not(tmp_path):
    data = trainer.EmojiData(tiny_dataset(tmp_path / "d.npz", per_class=(30, 2, 5)), torch.device("cpu"))
    idx, classes = data.balanced_batch(6000, torch.Generator().manual_seed(0))
    share = torch.bincount(classes, minlength=3).double() / 6000
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03), share
    assert (data.labels[idx] == classes).all()       # each drawn image belongs to its drawn class


def test_training_exports_a_checkpoint_that_loads_like_any_hub_model_and_resumes(tmp_path):
    data = tiny_dataset(tmp_path / "d.npz")
    work, out = tmp_path / "work", tmp_path / "export"
    common = ["--data", str(data), "--workdir", str(work), "--out", str(out), "--batch-size", "4",
              "--sample-steps", "2", "--threads", "1", "--log-seconds", "0"]
    trainer.main(common + ["--max-steps", "2"])
    net = models.load(str(out))
    assert net.config["num_class_embeds"] == 4                     # 3 classes + the null label
    assert net.scheduler_config["prediction_type"] == "v_prediction"
    weights = out / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size > 1e6 and (out / "README.md").is_file()
    with torch.no_grad():
        y = net(torch.zeros(1, 3, 32, 32), torch.tensor([500.0]), class_labels=torch.tensor([3]))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()
    assert (work / "samples" / "step_000002.png").is_file() and (work / "train_log.csv").is_file()

    trainer.main(common + ["--max-steps", "3", "--resume", "--bf16", "--progress", "bar"])   # mixed precision too
    stats = json.loads((work / "final_stats.json").read_text())
    assert stats["steps"] == 3 and stats["num_classes"] == 3
    rows = (work / "train_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]    # resumed at step 2, not from scratch


def test_the_learning_rate_warms_up_holds_then_anneals_to_its_final_value_at_the_last_step():
    args, _ = trainer.parse_args(["--workdir", "w", "--lr", "1e-3", "--warmup", "10", "--max-steps", "100",
                                  "--decay-steps", "40", "--lr-final", "1e-5"])
    lrs = [trainer.learning_rate(step, args) for step in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10:61] == [pytest.approx(1e-3)] * 51
    assert all(a > b for a, b in zip(lrs[60:], lrs[61:]))                   # strictly down to the end
    assert lrs[80] == pytest.approx((1e-3 + 1e-5) / 2)                      # half way down the cosine
    assert trainer.learning_rate(100, args) == pytest.approx(1e-5)
    constant, _ = trainer.parse_args(["--workdir", "w", "--warmup", "1"])
    assert trainer.learning_rate(10 ** 6, constant) == constant.lr
    with pytest.raises(ValueError, match="--decay-steps=5.*--max-steps"):
        trainer.parse_args(["--workdir", "w", "--decay-steps", "5"])
