"""The Compare tab: set-ups from the same noise, one labelled row per set-up, and the comparison the
page opens on (views.explain.ARRIVAL at a few evaluations, with the distance to the reference).

``updates`` turns lab.compare's progress into the tab's outputs (pictures as arrays); the app
writes the previews to files. ``arrival`` caches the opening comparison per model, so it is
computed once per process (at start-up by ``python app.py``, else on the first visit).
"""
from __future__ import annotations

import dataclasses
import threading

import gradio as gr
import numpy as np

import pandas as pd   # comes with gradio

import lab
import samplers
from views import explain
from views.common import sampler_choices
from views.generate import option_component

ROW_FIELDS = ("sampler", "steps", "order", "eta", "spacing")   # the controls of one set-up
ROW_PARAMS = ("order", "eta", "spacing")   # request names (lab.option_of gives the kernel option)
DEFAULT_STEPS = 5
DEFAULT_IMAGES = 4
SIDE = 80          # each final picture in the labelled rows, nearest-upscaled from 32 px
# the set-ups share one batch per round: a row's time is the moment it finished inside that batch, not its own cost
TABLE_COLUMNS = ["set-up", "sampler", "steps", "NFE", "finished at (s into the shared batch)", "distance to reference"]


def _title(r: dict) -> str:
    dist = "" if r.get("distance") is None else f" · distance to reference {r['distance']:.3f}"
    return f"{r['setup']}: {r['sampler']} · {r['steps']} steps · NFE {r['nfe']}{dist}"


def labelled_rows(rows: list[tuple[str, np.ndarray]], gap: int = 8, font_size: int = 15) -> np.ndarray:
    """[(title, picture), ...] -> one picture: each title above its row of pictures, on white."""
    from PIL import Image, ImageDraw

    text_h = font_size + 8
    blocks = []
    for title, picture in rows:
        block = Image.new("RGB", (max(picture.shape[1], 8 * len(title)), picture.shape[0] + text_h), "white")
        ImageDraw.Draw(block).text((2, 2), title, fill=(30, 30, 30), font=lab.font(font_size))
        block.paste(Image.fromarray(np.ascontiguousarray(picture[..., :3])), (0, text_h))
        blocks.append(np.asarray(block))
    return lab.stack(blocks, gap=gap)


def preview_picture(progress, info: lab.ModelInfo, labels: list[str]) -> np.ndarray:
    """While it runs: noisy sample | predicted x0 of each set-up under its label and evaluations so far."""
    panel = 128 if info.kind == "image" else 160
    return labelled_rows([(f"{label} · NFE {st.nfe}/{st.total_nfe}", lab.preview(st.x, st.x0, info, target=panel))
                          for label, st in zip(labels, progress.steps) if st is not None])


def final_picture(progress, info: lab.ModelInfo) -> np.ndarray:
    """The results: each set-up's final pictures in one labelled row (sampler, steps, NFE, distance)."""
    rows = []
    for r, pics in zip(progress.results, progress.images):
        if info.kind == "points":
            row = lab.upscale(pics[0], 256) if pics[0].shape[0] < 256 else pics[0][::2, ::2]
        else:
            row = lab.tile(np.stack([lab.upscale(p, SIDE) for p in pics]), cols=len(pics), gap=4)
        rows.append((_title(r), row))
    return labelled_rows(rows)


def updates(request: lab.CompareRequest, limits: lab.Limits, cancelled=None, live: lab.Live | None = None):
    """(picture or None, status, gallery, table, info) for every progress of one comparison."""
    info = lab.load_model(request.model, limits)[1]
    labels = [f"{i + 1}: {s.sampler} · {s.steps} steps" for i, s in enumerate(request.setups)]
    for p in lab.in_background(lambda: lab.compare(request, limits, live=live), cancelled=cancelled):
        if not p.done:
            yield (None if p.preview is None else preview_picture(p, info, labels)), p.message, None, None, None
            continue
        gallery = [(img, f"{r['setup']}: {r['sampler']} · NFE {r['nfe']} · done at {r['finished_at_seconds']:.2f} s")
                   for r, pics in zip(p.results, p.images) for img in pics]
        table = lab.tables.styled(pd.DataFrame(
            [[r["setup"], r["label"], r["steps"], r["nfe"], r["finished_at_seconds"], r["distance"]] for r in p.results],
            columns=TABLE_COLUMNS))
        note = (f"Done in {p.seconds:.3g} s as one batch (all set-ups together, one pass through the network per round); "
                f"each row's time is when it finished inside that shared batch.")
        if p.info.get("reference"):
            note += f" Distance = RMS difference (data scale [-1, 1]) to {p.info['reference']}."
        if p.info.get("notice"):
            note += f"\n\n⚠️ {p.info['notice']}"
        yield final_picture(p, info), note, gallery, table, p.info


# ---------------------------------------------------------------------------------------------
# The comparison on arrival

_arrival: dict = {}
_arrival_lock = threading.Lock()


def arrival_request(model: str, limits: lab.Limits) -> lab.CompareRequest:
    setups = [s for s in explain.ARRIVAL if s["sampler"] in samplers.REGISTRY][:limits.max_compare]
    return lab.parse_compare(dict(model=model, setups=setups, seed=0, num_images=min(DEFAULT_IMAGES,
                                     limits.max_images), reference=True), limits)


def arrival(model: str, limits: lab.Limits):
    """The opening comparison's updates: streamed the first time, then the cached last one."""
    request = arrival_request(model, limits)
    key = (model, limits.reference_steps, limits.max_images, limits.max_compare)
    # the lab's own opening picture, computed once for everyone: not priced against one request's budget
    limits = dataclasses.replace(limits, max_seconds=lab.Limits.BOUNDS["max_seconds"][1])
    with _arrival_lock:
        if key in _arrival:
            yield _arrival[key]
            return
        last = None
        for last in updates(request, limits):
            yield last
        if last is not None and last[2] is not None:
            _arrival[key] = last


def warm_arrival(model: str, limits: lab.Limits) -> threading.Thread:
    """Compute the opening comparison in the background (``python app.py`` does it at start-up)."""
    thread = threading.Thread(target=lambda: [None for _ in arrival(model, limits)], daemon=True,
                              name="arrival comparison")
    thread.start()
    return thread


def cached_arrival(model: str, limits: lab.Limits):
    return _arrival.get((model, limits.reference_steps, limits.max_images, limits.max_compare))


# ---------------------------------------------------------------------------------------------
# Tab


def tab(limits: lab.Limits) -> dict:
    names = list(samplers.REGISTRY)
    starts = [s for s in explain.ARRIVAL if s["sampler"] in names]
    spare = [n for n in ("euler", "dpm++2s-a", "heun") if n in names]
    defaults = starts + [{"sampler": n, "steps": DEFAULT_STEPS} for n in spare]
    shown = min(len(starts), limits.max_compare)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            gr.Markdown("Each set-up starts from the same noise; evaluations of the same round go through the "
                        "network as one batch. At a few evaluations the samplers differ most.", elem_classes="hint")
            preset = gr.Dropdown(choices=[p[0] for p in explain.PRESETS], value=None, label="Try",
                                 info="a preset fills in the set-ups: each shows what one setting changes",
                                 elem_id="compare-preset")
            preset_note = gr.Markdown("", elem_classes="hint", elem_id="compare-preset-note")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=2)
                stop = gr.Button("Stop", variant="stop", elem_id="compare-stop", scale=1)
            count = gr.Slider(1, limits.max_compare, value=shown, step=1, label="Set-ups")
            rows = []
            for i in range(limits.max_compare):
                d = defaults[i % len(defaults)]
                with gr.Group(visible=i < shown) as box:
                    with gr.Row():
                        sampler = gr.Dropdown(choices=sampler_choices(), value=d["sampler"],
                                              label=f"{i + 1}: Sampler", scale=3)
                        # no minimum / maximum: Gradio clamps a typed value silently; lab refuses it by name
                        steps = gr.Number(value=d.get("steps", DEFAULT_STEPS), precision=0, label="Steps", scale=1,
                                          info=f"1 to {limits.max_steps}", elem_id=f"compare-steps-{i + 1}")
                    nfe = gr.Markdown("", elem_classes="hint")
                    with gr.Row():
                        order = option_component(lab.option_of("order"))
                        eta = option_component(samplers.OPTIONS["eta"])
                        spacing = option_component(samplers.OPTIONS["spacing"])
                rows.append(dict(box=box, sampler=sampler, steps=steps, nfe=nfe, order=order, eta=eta,
                                 spacing=spacing))
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed", scale=3)
                dice = gr.Button("random seed", scale=1, min_width=60)
            num_images = gr.Number(value=min(DEFAULT_IMAGES, limits.max_images), precision=0,
                                   label="Images per set-up", info=f"1 to {limits.max_images}",
                                   elem_id="compare-num-images")
            reference = gr.Checkbox(value=True, label="Distance to the reference",
                                    info="exact for the Gaussian; else a many-step solve, cached per model and seed")
        with gr.Column(scale=3, elem_id="compare-watch", elem_classes="watch"):
            preview = gr.Image(label="one labelled row per set-up", show_label=False, format="png", interactive=False,
                               elem_id="compare-preview", elem_classes="pixelated")
            status = gr.Markdown("", elem_id="compare-status")
            table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, label="Results", elem_id="compare-table")
            with gr.Accordion("Final images (PNG, to download)", open=False):
                gallery = gr.Gallery(format="png", columns=6, height="auto", preview=False, show_label=False,
                                     buttons=["download", "download_all", "fullscreen"], elem_classes="pixelated",
                                     object_fit="contain", fit_columns=False, elem_id="compare-gallery")
            with gr.Accordion("Details (JSON, API names): the set-ups as /compare takes them, and the results",
                              open=False):
                setups = gr.JSON(label="Set-ups", value=[])
                info = gr.JSON(label="Results")
    return dict(preset=preset, preset_note=preset_note, count=count, rows=rows, seed=seed, dice=dice,
                num_images=num_images, reference=reference, run=run, stop=stop, preview=preview, status=status,
                gallery=gallery, table=table, setups=setups, info=info)


def preset(title: str, limits: lab.Limits, info: lab.ModelInfo | None) -> tuple[list[dict], str, dict]:
    """(the preset's set-ups, its explanation, the shared settings it sets) for this model."""
    found = [p for p in explain.PRESETS if p[0] == title]
    if not found:
        return [], "", {}
    _, text, setups, shared = found[0]
    setups = [s for s in setups if s["sampler"] in samplers.REGISTRY][:limits.max_compare]
    if shared.get("rescale_betas_zero_snr") and info is not None and info.prediction_type != "v_prediction":
        text += (f" ({info.loaded} predicts {info.prediction_type}; the page offers zero terminal SNR for "
                 "v-prediction models only, so here this preset changes the grids alone.)")
        shared = {k: v for k, v in shared.items() if k != "rescale_betas_zero_snr"}
    if "guidance_scale" in shared and info is not None and not info.guidance:
        text += f" ({info.loaded} has no classifier-free guidance: choose a guided model to see it.)"
        shared = {}
    return setups, text, shared


def stopped_picture(live: lab.Live) -> np.ndarray | None:
    """After Stop: each set-up's last noisy sample | predicted x0, labelled with where it stopped."""
    panel = 128 if live.info.kind == "image" else 160
    rows = []
    for i, (sampler, st) in enumerate(zip(live.samplers, live.latest)):
        if st is None:
            continue
        k, n, nfe = live.position(i)
        rows.append((f"{i + 1}: {sampler.name} · stopped at step {k}/{n} (NFE {nfe})",
                     lab.preview(st.x, st.x0, live.info, target=panel)))
    return labelled_rows(rows) if rows else None
