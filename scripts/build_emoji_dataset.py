"""Build assets/emoji32.npz from Google's Noto emoji in the npm package emoji-datasource-google.

    python scripts/build_emoji_dataset.py                    # runs `npm pack` into a temp dir
    python scripts/build_emoji_dataset.py --tarball emoji-datasource-google-16.0.0.tgz

Every 64x64 RGBA image (skin-tone variants included) is composited on white, downsampled to
32x32 and labelled with its emoji.json category.  The npz holds
    images      uint8 [N, 32, 32, 3]
    labels      int64 [N]   index into `categories`
    categories  str   [C]   fixed order (CATEGORIES below)
    names       str   [N]   emoji short name (with the skin-tone code point for variants)
The images are Apache-2.0 (Noto Emoji); the notice goes into assets/LICENSE-emoji.txt.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter

import numpy as np
from PIL import Image

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
IMAGE_DIR = "package/img/google/64/"
# emoji.json order; "Component" (5 bare skin-tone swatches) is left out: not a picture class.
CATEGORIES = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
    "Travel & Places", "Activities", "Objects", "Symbols", "Flags",
)
SIZE = 32

LICENSE_TEXT = f"""\
Emoji images: Noto Emoji, Copyright Google Inc., licensed under the Apache License,
Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0, full text:
https://github.com/googlefonts/noto-emoji/blob/main/LICENSE).

Source: the 64x64 PNGs of the npm package {PACKAGE}@{VERSION}
(https://github.com/iamcal/emoji-data; its metadata, emoji.json, is MIT, Copyright (c) 2013
Cal Henderson). The package README states: "Android/Google/Noto images, are available under
the Apache License 2.0".

Modifications: every image was composited on a white background and downsampled to 32x32
pixels (scripts/build_emoji_dataset.py); the category from emoji.json is kept as a label.
Weights trained on these images (assets/emoji-unet/) are a derived work distributed under the
same Apache License 2.0, with this notice.

Unless required by applicable law or agreed to in writing, the images are distributed on an
"AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""


def npm_pack(workdir: str) -> str:
    """Fetch the package tarball with the ordinary npm client; returns its path."""
    out = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=workdir,
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()
    return os.path.join(workdir, out[-1])


def emoji_entries(meta: list[dict]):
    """(image file, category, name) for every emoji and skin-tone variant that has a Google image."""
    for e in meta:
        if e["category"] not in CATEGORIES:
            continue
        if e.get("has_img_google"):
            yield e["image"], e["category"], e["short_name"]
        for code, var in sorted((e.get("skin_variations") or {}).items()):
            if var.get("has_img_google"):
                yield var["image"], e["category"], f"{e['short_name']}:{code.lower()}"


def to_rgb32(png_bytes: bytes) -> np.ndarray:
    rgba = Image.open(io.BytesIO(png_bytes)).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    # Exact 2x reduction: a box filter averages each 2x2 block (no ringing halos on the white
    # background that Lanczos adds around dark outlines); see the contact sheet check.
    return np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


def build(tarball: str):
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        meta = json.load(tar.extractfile(members["package/emoji.json"]))
        images, labels, names, missing = [], [], [], []
        for filename, category, name in emoji_entries(meta):
            member = members.get(IMAGE_DIR + filename)
            if member is None:
                missing.append(filename)
                continue
            images.append(to_rgb32(tar.extractfile(member).read()))
            labels.append(CATEGORIES.index(category))
            names.append(name)
    if missing:
        print(f"warning: {len(missing)} images listed in emoji.json are not in the tarball", file=sys.stderr)
    return np.stack(images), np.asarray(labels, dtype=np.int64), names


def main(argv=None):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tarball", help=f"{PACKAGE}-{VERSION}.tgz (default: npm pack it)")
    ap.add_argument("--out", default=os.path.join(here, "assets", "emoji32.npz"))
    ap.add_argument("--contact-sheet", help="also write a PNG grid of the first images per class")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball
        if tarball is None:
            tarball = npm_pack(tmp)
        elif not os.path.isfile(tarball):
            raise FileNotFoundError(f"--tarball={tarball!r}: no such file")
        images, labels, names = build(tarball)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels,
                        categories=np.asarray(CATEGORIES), names=np.asarray(names))
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "LICENSE-emoji.txt"), "w") as f:
        f.write(LICENSE_TEXT)

    counts = Counter(labels.tolist())
    print(f"{args.out}: {len(images)} images, {os.path.getsize(args.out) / 1e6:.2f} MB")
    for i, c in enumerate(CATEGORIES):
        print(f"  {i} {c:<18} {counts[i]:5d}  ({100 * counts[i] / len(labels):4.1f}%)")

    if args.contact_sheet:
        per_row = 24
        rows = []
        for i in range(len(CATEGORIES)):
            idx = np.flatnonzero(labels == i)
            pick = idx[np.linspace(0, len(idx) - 1, per_row).round().astype(int)]
            rows.append(np.concatenate(list(images[pick]), axis=1))
        sheet = np.concatenate(rows, axis=0)
        Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.Resampling.NEAREST).save(args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")


if __name__ == "__main__":
    main()
