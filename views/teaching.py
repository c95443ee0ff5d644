"""2-D: trajectories of up to 3 set-ups over the density, against an accurate reference (lab.analysis, 2.).

Every set-up starts from the same noise; the reference is a tight adaptive solve of the probability-flow ODE
from each set-up's own first sample through its own noise levels, so sampler and reference rows line up.
The picture is drawn here with numpy + PIL (Gradio's native plots cannot put lines over a heat map); the
slider re-draws it from the run's data kept in a gr.State, without touching the model.
"""
from __future__ import annotations

import math

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw

import lab
from lab import analysis
from views.common import errors_as_gradio, named, setup_slots, slot_params, slot_samplers

SLOTS = 3
DEFAULTS = (("ddim", 10, "trailing"), ("unipc", 5, "trailing"), ("euler", 5, "trailing"))
TWO_D_MODELS = ("mixture-2d", "gaussian")
PARAMS = ["model"] + slot_params(SLOTS) + ["points", "seed"]
MAX_TRAJECTORIES = 200       # more lines than this are a blur at this picture size
MAX_ROWS = 10000             # points x (NFE + 1) per set-up: the trajectory table must stay a few MB at most
DEFAULT_POINTS = 16
TOLERANCE = 1e-6             # the reference's relative error: far below any sampler's at these step counts
FRESH, FRESH_SEED = 2000, 20240  # fixed, so every run is measured against the same draw of the data
LEVELS = 6                   # noise levels of the background, log-spaced over the run, plus the clean data
GRID, TABLE_STRIDE = 96, 3   # density grid of the picture; every 3rd point of it goes into the API table
EXTENT = lab.SCATTER_EXTENT

TRAJECTORY_COLUMNS = ("label", "kind", "point", "index", "x", "y", "sigma")
DISTANCE_COLUMNS = ("label", "nfe", "mean_to_reference", "max_to_reference", "energy_to_data",
                    "reference_energy_to_data")
DENSITY_COLUMNS = ("t", "x", "y", "log_prob", "density")

# Drawing. The background goes from white (log density DEPTH nats below the peak) to a mid blue, light
# enough that the set-up colours and the grey reference stay visible on top of the modes.
SIZE, LINE = 480, 18
DEPTH = 10.0
RAMP = np.array([(255, 255, 255), (236, 242, 250), (205, 224, 241), (160, 199, 228), (112, 166, 210)], np.float64)
LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(RAMP)), RAMP[:, c]) for c in range(3)],
               axis=1).astype(np.uint8)
COLOURS = ((230, 85, 13), (197, 27, 138), (35, 139, 69))
REFERENCE = (105, 105, 105)


def _hex(colour) -> str:
    return "#" + "".join(f"{c:02x}" for c in colour)


# ---------------------------------------------------------------------------------------------
# Data


def load_2d_model(value, limits: lab.Limits):
    """(model, ModelInfo) of a 2-D model; image and hub models are refused before anything is loaded."""
    name = TWO_D_MODELS[0] if value in (None, "") else value
    refused = ValueError(f"model={lab.short(value)} is not a 2-D model; allowed: {', '.join(TWO_D_MODELS)} "
                         f"(this tab draws points in the plane)")
    if not isinstance(name, str) or (name not in TWO_D_MODELS and name not in lab.EXTRA_MODELS):
        raise refused
    net, info = lab.load_model(lab.check_model(name), limits)
    if info.kind != "points":
        raise refused
    return net, info


def _density_levels(setups, schedule) -> list[float]:
    """LEVELS noise levels log-spaced from the highest start to the lowest non-zero level of the run, then 0."""
    finite = np.concatenate([s["sigmas"][np.isfinite(s["sigmas"])] for s in setups])
    top = max(float(finite.max()), schedule.sigma_min)
    low = min(float(finite[finite > 0].min()) if np.any(finite > 0) else top, top)
    return [float(k) for k in np.geomspace(top, low, LEVELS)] + [0.0]


def rows(values: dict, limits: lab.Limits) -> dict:
    """Trajectories, reference, distances and background densities of every filled set-up slot."""
    net, info = load_2d_model(values.get("model"), limits)
    setups = slot_samplers(values, SLOTS, info, limits)
    points = lab.check_int("points", DEFAULT_POINTS if values.get("points") in (None, "") else values["points"],
                              1, min(MAX_TRAJECTORIES, limits.max_points))
    seed = lab.check_int("seed", 0 if values.get("seed") in (None, "") else values["seed"], 0, lab.MAX_SEED)
    for label, sampler in setups:
        if points * (sampler.nfe + 1) > MAX_ROWS:
            raise ValueError(f"points={points} with set-up {label} makes {points * (sampler.nfe + 1)} trajectory "
                             f"rows; allowed: points x (NFE + 1) <= {MAX_ROWS} per set-up (fewer points or steps)")
    fresh = net.sample(FRESH, torch.Generator().manual_seed(FRESH_SEED))
    runs, trajectory, distances, ends = [], [], [], []
    for label, sampler in setups:
        starts, generator = lab.make_noise(seed, points, (2,))   # the same noise (and noise stream) for all
        paths, sigmas = analysis.trajectories(sampler, net, starts, generator, with_sigmas=True)
        reference = analysis.reference_trajectory(net, paths[0], sigmas, tolerance=TOLERANCE)
        runs.append(dict(label=label, nfe=int(sampler.nfe), paths=paths, reference=reference, sigmas=sigmas))
        for kind, p in (("sampler", paths), ("reference", reference)):
            trajectory += [dict(r, kind=kind) for r in analysis.trajectory_rows(p, label, sigmas)]
        d = analysis.endpoint_distances(paths[-1], reference[-1], fresh)
        own = analysis.endpoint_distances(reference[-1], reference[-1], fresh)
        distances.append(dict(label=label, nfe=int(sampler.nfe), mean_to_reference=d["mean_distance"],
                              max_to_reference=d["max_distance"], energy_to_data=d["energy_distance"],
                              reference_energy_to_data=own["energy_distance"]))
        ends += [dict(label=label, x=float(x), y=float(y)) for x, y in paths[-1]]
        # set-ups starting at the same level share their reference cloud: drawn twice, under one label
        ends += [dict(label="reference", x=float(x), y=float(y)) for x, y in reference[-1]]
    ends += [dict(label="data", x=float(x), y=float(y)) for x, y in fresh[:MAX_TRAJECTORIES].tolist()]

    levels = _density_levels(runs, net.schedule)
    times = [float(net.schedule.t_of_sigma(k)) for k in levels[:-1]] + ["clean"]
    density = analysis.density_grid(net, times, extent=EXTENT, n=GRID)
    density["sigma"] = levels
    coarse = dict(density, x=density["x"][::TABLE_STRIDE], y=density["y"][::TABLE_STRIDE],
                  log_prob=density["log_prob"][:, ::TABLE_STRIDE, ::TABLE_STRIDE])
    # the slider's positions: every distinct noise level of any set-up, from the noisiest to the end
    timeline = sorted({float(k) for r in runs for k in r["sigmas"]}, reverse=True)
    return dict(model=info.name, setups=runs, trajectories=trajectory, distances=distances, ends=ends,
                density=density, density_rows=analysis.density_rows(coarse), timeline=timeline)


# ---------------------------------------------------------------------------------------------
# Picture


def _pixels(xy: np.ndarray) -> np.ndarray:
    scale = (SIZE - 1) / (2 * EXTENT)
    return np.stack([(xy[..., 0] + EXTENT) * scale, (EXTENT - xy[..., 1]) * scale], axis=-1)


def _background(log_prob: np.ndarray) -> Image.Image:
    shade = np.clip(1 + (log_prob - log_prob.max()) / DEPTH, 0, 1)
    rgb = LUT[np.round(shade * 255).astype(np.intp)][::-1]    # row 0 of the grid is the lowest y
    return Image.fromarray(np.ascontiguousarray(rgb)).resize((SIZE, SIZE), Image.BILINEAR)


def _nearest_level(levels: list[float], sigma: float) -> int:
    if sigma <= 0:
        return len(levels) - 1
    logs = [math.log(k) if k > 0 else -math.inf for k in levels]
    return int(np.argmin([abs(math.log(min(sigma, 1e300)) - v) for v in logs]))


def render(data: dict, step: int | None = None) -> np.ndarray:
    """The picture at slider position ``step`` (default: the end): every set-up drawn down to the noise
    level of that position, over the density at the nearest background level. uint8 [H, W, 3]."""
    timeline = data["timeline"]
    step = len(timeline) - 1 if step is None else int(min(max(step, 0), len(timeline) - 1))
    sigma = timeline[step]
    density = data["density"]
    level = _nearest_level(density["sigma"], sigma)
    runs = data["setups"]
    plot = _background(density["log_prob"][level])   # its own image: lines leaving the extent are clipped
    draw = ImageDraw.Draw(plot)
    mid = (SIZE - 1) / 2
    draw.line([(0, mid), (SIZE - 1, mid)], fill=(215, 215, 215))
    draw.line([(mid, 0), (mid, SIZE - 1)], fill=(215, 215, 215))

    shown = [max(int(np.sum(r["sigmas"] >= sigma * (1 - 1e-9))), 1) for r in runs]   # rows at or above sigma
    # references first, in grey under every set-up; then the set-ups, the first on top (a stochastic
    # set-up's jumps would otherwise hide the others); the points last
    order = list(enumerate(zip(runs, shown)))[::-1]
    for _, (r, upto) in order:
        for line in _pixels(r["reference"][:upto]).transpose(1, 0, 2):
            draw.line([tuple(p) for p in line], fill=REFERENCE, width=3)
    for i, (r, upto) in order:
        for line in _pixels(r["paths"][:upto]).transpose(1, 0, 2):
            draw.line([tuple(p) for p in line], fill=COLOURS[i % len(COLOURS)], width=2)
    for i, (r, upto) in order:
        for x, y in _pixels(r["paths"][0]):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(0, 0, 0))
        for x, y in _pixels(r["reference"][upto - 1]):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=REFERENCE, width=2)
        for x, y in _pixels(r["paths"][upto - 1]):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[i % len(COLOURS)], outline="white")

    img = Image.new("RGB", (SIZE, SIZE + LINE * (len(runs) + 2) + 8), "white")
    img.paste(plot, (0, 0))
    draw, font, top = ImageDraw.Draw(img), lab.font(13), SIZE + 6
    where = "the clean data" if level == len(density["sigma"]) - 1 else f"sigma ~ {density['sigma'][level]:.3g}"
    draw.text((8, top), f"step {step}/{len(timeline) - 1}: sigma = {sigma:.3g}; background: log density at {where}",
              fill=(40, 40, 40), font=font)
    legend = [(COLOURS[i % len(COLOURS)], f"{r['label']}  (NFE {r['nfe']})") for i, r in enumerate(runs)]
    legend.append((REFERENCE, f"reference: probability-flow ODE, tolerance {TOLERANCE:g}; black dots: starts"))
    for j, (colour, text) in enumerate(legend):
        y = top + LINE * (j + 1)
        draw.line([(8, y + 7), (30, y + 7)], fill=colour, width=3)
        draw.text((38, y), text, fill=(40, 40, 40), font=font)
    return np.asarray(img)


# ---------------------------------------------------------------------------------------------
# Tab


def tab(ctx):
    limits = ctx["limits"]
    gr.Markdown("Trajectories of up to 3 samplers on a 2-D model, from the same starting points, over the density "
                "of the noisy data. Grey: a very accurate solve of the probability-flow ODE from each set-up's "
                "start (stochastic samplers are meant to leave it). The slider walks down the noise levels; the "
                "table gives how far each set-up's end points are from the reference and from the data.",
                elem_classes="hint")
    with gr.Row():
        model = gr.Dropdown(choices=list(TWO_D_MODELS), value=TWO_D_MODELS[0], label="model (2-D)", scale=2)
        points = gr.Number(value=DEFAULT_POINTS, precision=0, label="points", scale=1,
                           info=f"1 to {min(MAX_TRAJECTORIES, limits.max_points)}")
        seed = gr.Number(value=0, precision=0, label="seed", scale=1)
    slots = setup_slots(DEFAULTS[:SLOTS], limits)
    run = gr.Button("Run", variant="primary", elem_id="teaching-button")
    with gr.Row():
        picture = gr.Image(type="numpy", format="png", interactive=False, label="trajectories",
                           elem_id="teaching-plot", scale=3)
        end_plot = gr.ScatterPlot(x="x", y="y", color="label", label="end points (hover for values)",
                                  scale=2)
    slider = gr.Slider(0, 1, value=1, step=1, label="step (noise level, noisiest first)", elem_id="teaching-slider")
    distances = gr.Dataframe(headers=list(DISTANCE_COLUMNS), interactive=False, elem_id="teaching-distances",
                             label="end points: Euclidean distance to the reference (same start), energy distance "
                                   f"to {FRESH} fresh data samples (the reference's own for scale)")
    with gr.Accordion("data", open=False):
        trajectory_table = gr.Dataframe(headers=list(TRAJECTORY_COLUMNS), interactive=False, label="trajectories")
        density_table = gr.Dataframe(headers=list(DENSITY_COLUMNS), interactive=False,
                                     label="background log density (every 3rd grid point)")
    state = gr.State()

    def teaching(*values):
        import pandas as pd  # comes with gradio

        try:
            data = rows(dict(zip(PARAMS, values)), limits)
        except (ValueError, FileNotFoundError) as exc:
            raise errors_as_gradio(exc, "teaching") from None

        def table(found, columns):
            return pd.DataFrame([[r[c] for c in columns] for r in found], columns=list(columns))

        colours = {r["label"]: _hex(COLOURS[i % len(COLOURS)]) for i, r in enumerate(data["setups"])}
        colours.update(reference=_hex(REFERENCE), data="#9ecae1")
        last = len(data["timeline"]) - 1
        return (render(data), gr.ScatterPlot(value=table(data["ends"], ("label", "x", "y")), color_map=colours),
                table(data["distances"], DISTANCE_COLUMNS), table(data["trajectories"], TRAJECTORY_COLUMNS),
                table(data["density_rows"], DENSITY_COLUMNS), gr.Slider(maximum=max(last, 1), value=last),
                {k: data[k] for k in ("setups", "density", "timeline")})   # all render() needs, kept per session

    run.click(named(teaching, PARAMS), [model, *slots, points, seed],
              [picture, end_plot, distances, trajectory_table, density_table, slider, state],
              api_name="teaching", concurrency_id=ctx["concurrency_id"], concurrency_limit=ctx["concurrency_limit"],
              preprocess=False,
              api_description="Up to 3 set-ups (sampler_i, steps_i, spacing_i) on a 2-D model from the same "
                              "`points` starting noises (`seed`): the picture, end points, a distance table per "
                              "set-up, trajectory rows (label, kind sampler/reference, point, index, x, y, sigma) "
                              "and the background log density rows.")
    # scrubbing only re-draws from the kept data (no model call) and is outside the model's concurrency
    # group, so it never waits behind a run; always_last drops the positions a fast drag skipped over
    slider.input(lambda data, step: None if data is None else render(data, step), [state, slider], picture,
                 api_visibility="private", trigger_mode="always_last", show_progress="hidden")
