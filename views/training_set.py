"""Network vs training set: the default network and its ideal-denoiser twin (the exact posterior
mean over the same training images) run the same sampler from the same noise; each result is set
beside its nearest training image.

The twin knows nothing but the training set, so its runs end on training images: it memorises by
construction. Where the network's picture is far from every training image, it made something new.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator

import gradio as gr
import numpy as np
import torch

import lab
from views.common import cancel_watch, errors_as_gradio, gpu, named, sampler_choices

TWINS = {"default": "ideal-emoji"}   # network -> the analytic model over its training images
PARAMS = ["model", "class_label", "guidance_scale", "sampler", "steps", "seed", "num_images"]
COLUMNS = ("image", "network_to_nearest", "nearest", "nearest_class", "twin_to_nearest", "twin_nearest",
           "network_to_twin")
SIDE = 96   # each picture of the comparison, nearest-upscaled from 32 px


def check(values: dict, limits: lab.Limits):
    """(network, setup, seed, count, conditioning), every input checked before any model work."""
    lab.check_known_params(values, PARAMS)
    network = values.get("model") or "default"
    if not isinstance(network, str) or network not in TWINS:   # a dict or list is not hashable
        raise ValueError(f"model={lab.short(network)} has no training-set twin here; allowed: "
                         f"{', '.join(TWINS)} (the networks whose training images ship with the app)")
    setup = lab.check_setup({k: values.get(k) for k in ("sampler", "steps")}, limits)
    seed = lab.check_seed(values.get("seed"))
    count = lab.check_int("num_images", 1 if values.get("num_images") in (None, "") else values["num_images"],
                             1, limits.max_images, hint=" on this machine; MAX_IMAGES")
    cond = lab.check_conditioning({k: values.get(k) for k in ("class_label", "guidance_scale")})
    return network, setup, seed, count, cond


def _network_available(network: str, limits: lab.Limits) -> None:
    info = lab.load_model(network, limits)[1]
    if info.loaded != network:
        raise FileNotFoundError(f"the {network} network is not available on this machine ({info.notice}); "
                                f"train it with scripts/train_default_model.py")


def _rms_255(distance: torch.Tensor, dim: int) -> list[float]:
    """Euclidean distances of [-1, 1] images as a root-mean-square pixel difference on the 0-255 scale."""
    return [round(float(d) / math.sqrt(dim) * 127.5, 2) for d in distance]


def rows(values: dict, limits: lab.Limits) -> Iterator[tuple[str, np.ndarray | None, dict | None]]:
    """(status, picture or None, result or None): the network's run, the twin's run, then the comparison.

    The result holds ``rows`` (one per image, as ``COLUMNS``) and ``picture`` (network | twin |
    nearest training image, one line per image).
    """
    network, setup, seed, count, cond = check(values, limits)
    _network_available(network, limits)
    finals = {}
    start = time.perf_counter()
    for who, model in (("network", network), ("training set", TWINS[network])):
        # the same seed: the same starting noise (and the same later draws for a stochastic sampler);
        # the twin's classes are exact, so guidance does nothing there (lab.resolve_conditioning)
        request = lab.GenerateRequest(model, setup, seed, count, cond)
        for progress in lab.generate(request, limits):
            if progress.done:
                finals[who] = progress.sample
            yield f"{who}: {progress.status()}", progress.preview, None
    twin = lab.load_model(TWINS[network], limits)[0]
    net_index, net_dist = twin.nearest(finals["network"])
    twin_index, twin_dist = twin.nearest(finals["training set"])
    between = (finals["network"].double().cpu() - finals["training set"].double().cpu()).flatten(1).norm(dim=1)
    dim = twin.dim
    names = twin.names or [f"#{i}" for i in range(twin.images.shape[0])]
    categories = twin.categories or []

    def category(i: int) -> str:
        label = int(twin.labels[i]) if twin.labels is not None else -1
        return categories[label] if 0 <= label < len(categories) else ""

    found = []
    for i, (n, d, tn, td, b) in enumerate(zip(net_index.tolist(), _rms_255(net_dist, dim), twin_index.tolist(),
                                              _rms_255(twin_dist, dim), _rms_255(between, dim))):
        found.append(dict(image=i, network_to_nearest=d, nearest=names[n], nearest_class=category(n),
                          twin_to_nearest=td, twin_nearest=names[tn], network_to_twin=b))
    nearest_images = twin.images[net_index].reshape(-1, *twin.event_shape)
    picture = comparison(lab.to_uint8(finals["network"]), lab.to_uint8(finals["training set"]),
                         lab.to_uint8(nearest_images), found)
    status = (f"done in {time.perf_counter() - start:.2f} s · distances: root-mean-square pixel difference "
              f"(0-255) · the network's nearest training image is {_summary(found)}")
    yield status, picture, dict(rows=found, picture=picture)


def _summary(found: list[dict]) -> str:
    net = [r["network_to_nearest"] for r in found]
    twin = [r["twin_to_nearest"] for r in found]
    return (f"{min(net):.1f}-{max(net):.1f} away (the twin's: {min(twin):.1f}-{max(twin):.1f})" if len(found) > 1
            else f"{net[0]:.1f} away (the twin's: {twin[0]:.1f})")


def comparison(network: np.ndarray, twin: np.ndarray, nearest: np.ndarray, found: list[dict]) -> np.ndarray:
    """One line per image: network | training-set twin | the training image nearest the network's."""
    lines = [lab.labelled_strip([
        (network[i], f"network #{i}", f"{r['network_to_nearest']:.1f} to nearest"),
        (twin[i], "ideal twin", f"{r['twin_to_nearest']:.1f} to nearest"),
        (nearest[i], "nearest training", r["nearest"][:15]),
    ], side=SIDE, font_size=12) for i, r in enumerate(found)]   # 12 px: the spaces between words show
    return lab.stack(lines)


def gpu_seconds(values: dict, limits: lab.Limits) -> int:
    steps = values.get("steps") if isinstance(values.get("steps"), (int, float)) else 20
    count = values.get("num_images") if isinstance(values.get("num_images"), (int, float)) else 1
    return lab.gpu_seconds(int(min(steps, limits.max_steps)) * 4, int(min(count, limits.max_images)))


def tab(ctx):
    limits = ctx["limits"]
    gr.Markdown("The default network against its training set. Its twin, the ideal denoiser, is the exact answer "
                "over the same emoji images: it can only return (blends of) training images. Both run the same "
                "sampler from the same noise, with the class chosen above (the twin keeps to it exactly; guidance "
                "applies to the network); the third picture is the training image nearest the network's. A network "
                "that only memorised would match its nearest training image; one that generalises lands between "
                "them. Distances: root-mean-square pixel difference (0-255).", elem_classes="hint")
    with gr.Row():
        sampler = gr.Dropdown(choices=sampler_choices(), value="ddim", label="sampler", scale=3)
        steps = gr.Number(value=20, precision=0, label="steps", scale=1)
        seed = gr.Number(value=0, precision=0, label="seed", scale=1)
        num_images = gr.Number(value=4, precision=0, label="num_images",
                               scale=1)
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="training-set-button")
        stop = gr.Button("Stop", variant="stop", elem_id="training-set-stop")
    status = gr.Markdown("", elem_id="training-set-status")
    picture = gr.Image(type="numpy", format="png", interactive=False, label="network | ideal twin | nearest "
                       "training image", elem_id="training-set-picture", elem_classes="pixelated")
    table = gr.Dataframe(headers=list(COLUMNS), interactive=False, label="one row per image",
                         elem_id="training-set-table")

    def training_set(*values):
        import pandas as pd   # comes with gradio

        try:
            for note, shown, result in lab.in_background(lambda: rows(dict(zip(PARAMS, values)), limits),
                                                            cancelled=cancel_watch()):
                if result is None:
                    yield note, (gr.skip() if shown is None else shown), gr.skip()
                else:
                    frame = lab.tables.styled(pd.DataFrame([[r[c] for c in COLUMNS] for r in result["rows"]],
                                                           columns=list(COLUMNS)))
                    yield note, result["picture"], frame
        except (ValueError, FileNotFoundError) as exc:
            raise errors_as_gradio(exc, "training_set") from None

    handler = named(gpu(lambda *v: gpu_seconds(dict(zip(PARAMS, v)), limits))(training_set), PARAMS)
    event = run.click(handler, [ctx["model"], ctx["class_label"], ctx["guidance_scale"], sampler, steps, seed,
                                num_images], [status, picture, table],
                      api_name="training_set", concurrency_id=ctx["concurrency_id"],
                      concurrency_limit=ctx["concurrency_limit"], preprocess=False, show_progress="minimal",
                      show_progress_on=status,
                      api_description="A network (model: " + ", ".join(TWINS) + ") and its ideal-denoiser twin "
                                      "(exact over the training images) with one sampler from the same noise; "
                                      "streams (status, preview, table) and ends with the picture network | twin "
                                      "| nearest training image and one row per image: " + ", ".join(COLUMNS))
    stop.click(None, None, None, cancels=[event], api_visibility="private")
