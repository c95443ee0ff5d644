"""Pictures: uint8 images, previews, 2-D scatter plots, labelled strips, preview files."""
from __future__ import annotations

import functools
import itertools
import math
import os

import numpy as np
import torch

from lab.catalog import ModelInfo


PREVIEW_PANEL = 256   # previews are upscaled (nearest) until a panel is at least this wide


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (or [N, H, W] for one channel), as saved in the PNGs."""
    img = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    img = img.permute(0, 2, 3, 1).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[-1] == 3:
        return img
    return np.repeat(img[..., :1], 3, axis=2) if img.shape[-1] != 4 else img[..., :3]


def tile(images: np.ndarray, cols: int | None = None, gap: int = 1, fill: int = 255) -> np.ndarray:
    """uint8 [N, H, W(, 3)] -> one grid image [rows*H, cols*W, 3]."""
    n = images.shape[0]
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = images.shape[1:3]
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), fill, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = rgb(images[i])
    return out


def upscale(img: np.ndarray, target: int = PREVIEW_PANEL) -> np.ndarray:
    factor = max(1, target // max(img.shape[:2]))
    return img if factor == 1 else img.repeat(factor, axis=0).repeat(factor, axis=1)


@functools.lru_cache(maxsize=4)
def font(size: int):
    """PIL's built-in font at ``size`` px, for labels drawn into pictures (no font files needed)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):   # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def labelled_strip(pictures, side: int = 64, gap: int = 4, font_size: int = 11) -> np.ndarray:
    """[(picture, line 1, line 2), ...] -> one row of pictures (nearest-upscaled to ``side``) with two
    lines of text under each: the x0 strip of a run's trace, the network-vs-training-set lines."""
    from PIL import Image, ImageDraw

    label_font = font(font_size)
    text_h = 2 * font_size + 6
    out = Image.new("RGB", (len(pictures) * (side + gap) - gap, side + text_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (picture, first, second) in enumerate(pictures):
        img = Image.fromarray(rgb(np.asarray(picture, np.uint8)))
        img = img.resize((side, side), Image.NEAREST if img.width <= side else Image.BILINEAR)
        x = i * (side + gap)
        out.paste(img, (x, 0))
        draw.text((x + 1, side + 2), first, fill=(40, 40, 40), font=label_font)
        draw.text((x + 1, side + font_size + 4), second, fill=(110, 110, 110), font=label_font)
    return np.asarray(out)


SCATTER_EXTENT = 2.5   # the 2-D plots show [-2.5, 2.5]^2: the data lies within radius 1, noise mostly inside


def scatter(points: torch.Tensor | np.ndarray, size: int = PREVIEW_PANEL, color=(31, 119, 180)) -> np.ndarray:
    """A plain raster scatter plot of [N, 2] points (no plotting library needed)."""
    pts = np.asarray(points.detach().cpu().numpy() if torch.is_tensor(points) else points, np.float64).reshape(-1, 2)
    img = np.full((size, size, 3), 255, np.uint8)
    mid = size // 2
    img[mid, :] = img[:, mid] = 225
    scale = (size - 1) / (2 * SCATTER_EXTENT)
    keep = np.all(np.isfinite(pts), axis=1)
    cols = np.round((pts[keep, 0] + SCATTER_EXTENT) * scale).astype(int)
    rows = np.round((SCATTER_EXTENT - pts[keep, 1]) * scale).astype(int)
    for dr, dc in itertools.product((-1, 0, 1), repeat=2):
        r, c = rows + dr, cols + dc
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        img[r[ok], c[ok]] = color
    return img


def picture(x: torch.Tensor, info: ModelInfo, *, clean: bool, target: int = PREVIEW_PANEL) -> np.ndarray:
    """One panel: the image grid (upscaled) or the scatter plot of a batch."""
    if info.kind == "points":
        return scatter(x, target, (214, 39, 40) if clean else (31, 119, 180))
    return upscale(tile(to_uint8(x)), target)


def stack(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures one under another, left-aligned on white."""
    out = np.full((sum(p.shape[0] for p in pictures) + gap * (len(pictures) - 1), max(p.shape[1] for p in pictures), 3),
                  255, np.uint8)
    y = 0
    for p in pictures:
        out[y:y + p.shape[0], :p.shape[1]] = p
        y += p.shape[0] + gap
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[:left.shape[0], :left.shape[1]] = left
    out[:right.shape[0], left.shape[1] + gap:] = right
    return out


def preview(x: torch.Tensor, x0: torch.Tensor, info: ModelInfo, target: int = PREVIEW_PANEL) -> np.ndarray:
    """The noisy sample (left) and the predicted x0 (right)."""
    return side_by_side(picture(x, info, clean=False, target=target), picture(x0, info, clean=True, target=target))


def final_pictures(x: torch.Tensor, info: ModelInfo) -> list[np.ndarray]:
    """What the gallery shows and the PNGs hold: each image at its own resolution, or one scatter plot."""
    if info.kind == "points":
        return [scatter(x, 512, (214, 39, 40))]
    return list(to_uint8(x))


class PreviewFile:
    """The current preview as a JPEG file, rewritten only when a new preview is drawn.

    A streaming server re-sends every output with every update; handing it the same small file
    again is far cheaper than a new image to encode (or an "unchanged" marker, which Gradio 6
    answers by building a new component per update). One file per run, deleted at the end.
    """

    def __init__(self, quality: int = 90):
        import tempfile

        self.quality = quality
        self.folder = tempfile.mkdtemp(prefix="sampler-lab-preview-")
        self.path: str | None = None
        self.count = 0

    def update(self, image: np.ndarray | None) -> str | None:
        if image is not None:
            from PIL import Image

            self.count += 1
            path = os.path.join(self.folder, f"preview-{self.count}.jpg")
            Image.fromarray(image).save(path, format="JPEG", quality=self.quality)
            if self.path is not None:
                self._remove(self.path)
            self.path = path
        return self.path

    def png(self, image: np.ndarray, name: str) -> str:
        """``image`` as a PNG file next to the preview (fast compression: Gradio's own default costs ~5x
        longer, at the end of every run); removed with the preview at close()."""
        from PIL import Image

        path = os.path.join(self.folder, f"{name}.png")
        Image.fromarray(image).save(path, format="PNG", compress_level=1)
        return path

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        self.path = None
