"""Error vs steps: each set-up's error against a reference as its NFE grows, with the fitted order
(lab.analysis.error_curve, streamed one run at a time)."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

import lab
import samplers
from lab import analysis
from views.common import cancel_watch, errors_as_gradio, gpu, named, sampler_choices, slot_params, slot_setups

SLOTS = 4
SLOT_FIELDS = ("sampler", "order", "spacing")   # steps do not apply: the NFE targets choose them
# logsnr: on grids uniform in t the long last step makes every method look first order
DEFAULTS = (("ddim", None, "logsnr"), ("dpm-solver++", 2, "logsnr"), ("unipc", 3, "logsnr"), ("", None, None))
DEFAULT_NFE = "4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50"
MAX_TARGETS = 30
COLUMNS = ("setup", "label", "sampler", "target", "steps", "nfe", "error", "seconds")
PARAMS = (["model", "class_label", "guidance_scale", "guidance_rescale", "rescale_betas_zero_snr", "seed",
           "num_images", "nfe"] + slot_params(SLOTS, SLOT_FIELDS))
# one colour per set-up slot (Vega's category10), so a curve keeps its colour while its legend entry changes
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
EXACT_REFERENCE = "the exact probability-flow map (closed form) from each run's own first sample and noise level"


@dataclass
class Setup:
    slot: int
    label: str
    method: str
    options: dict        # the model's defaults filled in
    schedule: object     # samplers.NoiseSchedule


@dataclass
class Plan:
    prepared: lab.Prepared
    cond: lab.Conditioning
    seed: int
    count: int
    targets: list[int]
    setups: list[Setup]
    work: int                               # model evaluations of every run (the reference solve aside)


def check_nfe(value, limits: lab.Limits) -> list[int]:
    """The NFE targets, sorted and without repeats: a list, or a text like '4, 8, 16' (empty: DEFAULT_NFE)."""
    if value is None or value == "":
        value = DEFAULT_NFE
    items = value.replace(",", " ").replace(";", " ").split() if isinstance(value, str) else value
    if isinstance(items, (int, float)):
        items = [items]
    if not isinstance(items, (list, tuple)) or not 1 <= len(items) <= MAX_TARGETS:
        raise ValueError(f"nfe={lab.short(value)} must be 1 to {MAX_TARGETS} integers, e.g. '{DEFAULT_NFE}'")
    return sorted({lab.check_int("nfe", v, 1, limits.max_nfe, hint=" on this machine; MAX_NFE") for v in items})


def _label(method: str, options: dict) -> str:
    """The method with the order and spacing that actually run (the model's defaults filled in)."""
    shown = lab.public_options(options)
    parts = [f"order={shown['order']}"] if "order" in shown else []
    parts += [shown["spacing"]] if "spacing" in shown else []
    return f"{method} ({', '.join(parts)})" if parts else method


def _planned_nfe(method: str, options: dict, schedule, targets: list[int], limits: lab.Limits, where: str) -> int:
    """Evaluations of the runs error_curve will make (analysis.planned_runs), each within this machine's limits."""
    try:
        runs = analysis.planned_runs(method, options, schedule, targets)
    except ValueError as exc:
        raise ValueError(f"{where}{lab.kernel_text(str(exc))}") from None
    _, steps, nfe = max(runs, key=lambda run: run[1])
    if steps > limits.max_steps or nfe > limits.max_nfe:
        raise ValueError(f"{where}nfe={max(targets)} needs {steps} steps ({nfe} evaluations) of "
                         f"{method}; allowed: at most MAX_STEPS={limits.max_steps} steps and "
                         f"MAX_NFE={limits.max_nfe} evaluations per run on this machine")
    return sum(nfe for _, _, nfe in runs)


def check(values: dict, limits: lab.Limits) -> Plan:
    """Every input checked and the total work capped before any model evaluation (ValueError otherwise)."""
    model = lab.check_model(values.get("model"))
    cond = lab.check_conditioning(values)
    seed = lab.check_seed(values.get("seed"))
    count = lab.check_count(values, limits)
    targets = check_nfe(values.get("nfe"), limits)
    prepared = lab.prepare(model, count, cond, limits)
    setups, work = [], 0
    for i, spec in slot_setups(values, SLOTS, limits, SLOT_FIELDS, with_steps=False):   # the targets pick steps
        where = f"set-up {i}: "
        # the error is against the probability-flow ODE; clipping x0 (on in the default model's config)
        # solves a different equation, so every curve would level off at the clipping's own error
        applies = lab.method_applies(spec.sampler)
        spec.options.update({k: False for k in lab.CLIPPING_OPTIONS if k in applies})
        # the options the app would run: the model's schedule and prediction type, its option defaults
        options, schedule = lab.setup_options(prepared.info, spec, cond, where=where)
        work += _planned_nfe(spec.sampler, options, schedule, targets, limits, where)
        setups.append(Setup(i, _label(spec.sampler, options), spec.sampler, options, schedule))
    cap = limits.max_nfe * limits.max_compare   # the most a /compare may ask: MAX_COMPARE set-ups of MAX_NFE
    if work > cap:
        raise ValueError(f"nfe={targets} over {len(setups)} set-up(s) needs {work} model evaluations in all; "
                         f"allowed: at most {cap} (MAX_NFE x MAX_COMPARE) on this machine: use fewer or smaller "
                         f"targets, or fewer set-ups")
    return Plan(prepared, cond, seed, count, targets, setups, work)


def rows(values: dict, limits: lab.Limits) -> Iterator[tuple[list[dict], str]]:
    """(every row so far, a status line) after each run; rows as ``COLUMNS``.

    The reference: the exact flow for a model that has one (GaussianData), else the /compare
    reference (a many-step solve from the same noise, cached per model, seed and conditioning).
    """
    plan = check(values, limits)
    info = plan.prepared.info
    noise, _ = lab.make_noise(plan.seed, plan.count, info.event_shape, info.device)
    found: list[dict] = []
    start = time.perf_counter()
    record = lab.new_run("errors", plan.work)
    with lab.Tracked(record):
        if info.exact_flow:
            noise = noise.double()   # exact answers: errors far below float32 rounding stay visible
            reference, described = lab.reference.exact_flow(plan.prepared.net), EXACT_REFERENCE
        else:
            solved = yield from lab.relay(lab.reference.run(plan.prepared, plan.cond, plan.seed, plan.count, limits),
                                          lambda line: ([], line))

            def reference(x, sigma_start, sigma_end):   # one fixed answer: a grid starting below T-1 shows a floor
                return solved

            described = lab.reference.description(info, limits)
        for s in plan.setups:
            slot, label = s.slot, s.label
            for point in analysis.error_curve(s.method, s.options, plan.prepared.model, noise, reference,
                                              plan.targets, s.schedule, plan.seed):
                found.append(dict(setup=slot, label=label, sampler=s.method, **point))
                record.nfe += point["nfe"]
                error = "none" if point["error"] is None else f"{point['error']:.3g}"
                yield list(found), (f"{slot}: {label} · NFE {point['nfe']}: error {error} · "
                                    f"{record.nfe}/{plan.work} evaluations")
        notice = f"\n\n⚠️ {info.notice}" if info.notice else ""
        orders = fitted_orders(found)
        fits = " · ".join(f"{s.slot}: {s.label} · fitted order {orders[s.slot]:.2f}" for s in plan.setups
                          if orders.get(s.slot) is not None)
        yield list(found), (f"done in {time.perf_counter() - start:.2f} s · error = |x - x_ref| / |x_ref| against "
                            f"{described}\n\n{fits}{notice}")


def fitted_orders(found: list[dict]) -> dict[int, float | None]:
    """Each set-up's fitted order (None until 2 of its points have an error)."""
    orders = {}
    for setup in dict.fromkeys(r["setup"] for r in found):
        mine = [r for r in found if r["setup"] == setup]
        try:
            orders[setup] = analysis.fit_order([r["nfe"] for r in mine], [r["error"] for r in mine])["order"]
        except ValueError:   # fewer than 2 points with a positive error
            orders[setup] = None
    return orders


def frames(found: list[dict]):
    """(plot, colour of each curve, table): log10 error against log10 NFE (native plots have no log axes)."""
    import pandas as pd   # comes with gradio

    # legend entries: the plot cuts them at about 30 characters, so the slot, the method and the fitted order
    names = {r["setup"]: f"{r['setup']}: {r['sampler']}" for r in found}
    for setup, order in fitted_orders(found).items():
        names[setup] += "" if order is None else f" (order {order:.1f})"
    # an exact answer (0) or a lost one (None) has no logarithm: left out of the plot only
    points = [dict(curve=names[r["setup"]], log10_nfe=math.log10(r["nfe"]), log10_error=math.log10(r["error"]),
                   nfe=r["nfe"], error=r["error"]) for r in found if r["error"]]
    colours = {name: COLOURS[(setup - 1) % len(COLOURS)] for setup, name in names.items()}
    table = lab.tables.styled(pd.DataFrame([[r[c] for c in COLUMNS] for r in found], columns=list(COLUMNS)))
    return (pd.DataFrame(points) if points else None), colours or None, table


def gpu_seconds(values: dict, limits: lab.Limits) -> int:
    try:
        plan = check(values, limits)
    except (ValueError, FileNotFoundError):
        return 15   # refused before any model work
    return lab.gpu_seconds(plan.work + limits.reference_steps, plan.count)


def tab(ctx):
    limits = ctx["limits"]
    gr.Markdown("Each set-up runs at every NFE target (the step count whose model evaluations come closest) from "
                "the same noise; the error is |x - x_ref| / |x_ref| against the exact flow (Gaussian model) or "
                "the cached many-step solve that Compare uses (other models). On log-log axes a method of order p "
                "falls with slope -p: the legend gives the fitted order. Against the cached solve, a grid that does "
                "not start at T-1 levels off at the error of its start. Clipping and thresholding of x0 are off here "
                "(a model config may turn them on): they change the equation being solved.", elem_classes="hint")
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="seed", scale=1)
        num_images = gr.Number(value=1, precision=0,
                               label="num_images", info="images (points for 2-D models)", scale=1,
                               elem_id="errors-num-images")
        # a 2-D model's error is over a cloud of points; an image model's over a few images
        ctx["model_updates"].append((num_images, lambda info: gr.update(
            label=f"num_images ({'points' if info.kind == 'points' else 'images'})",
            value=min(200, limits.max_points) if info.kind == "points" else 1)))
        nfe = gr.Textbox(value=DEFAULT_NFE, label="nfe", info=f"NFE targets, up to {MAX_TARGETS}", scale=3)
    order_choices = [("sampler default", "")] + list(lab.option_choices(lab.option_of("order")))
    spacing_choices = [("sampler default", "")] + list(lab.option_choices(samplers.OPTIONS["spacing"]))
    slots = []
    for i, (name, order, spacing) in enumerate(DEFAULTS[:SLOTS]):
        with gr.Row():
            slots.append(gr.Dropdown(choices=[("(none)", "")] + sampler_choices(), value=name,
                                     label=f"{i + 1}: sampler", scale=3))
            slots.append(gr.Dropdown(choices=order_choices, value=order or "", label="order", scale=1))
            slots.append(gr.Dropdown(choices=spacing_choices, value=spacing or "", label="spacing", scale=2))
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="errors-button")
        stop = gr.Button("Stop", variant="stop", elem_id="errors-stop")
    status = gr.Markdown("", elem_id="errors-status")
    plot = gr.LinePlot(x="log10_nfe", y="log10_error", color="curve", x_title="log10 NFE", y_title="log10 error",
                       tooltip=["curve", "nfe", "error"], label="relative error against model evaluations",
                       elem_id="errors-plot")
    table = gr.Dataframe(headers=list(COLUMNS), interactive=False, label="one row per run", elem_id="errors-table")

    def errors(*values):
        # the runs go on in a worker while each update is drawn and sent (lab.in_background)
        try:
            for found, note in lab.in_background(lambda: rows(dict(zip(PARAMS, values)), limits),
                                                    cancelled=cancel_watch()):
                shown, colours, frame = frames(found)
                # the browser takes the colour scale's categories from the plot's first value; a new colour
                # map (a legend entry whose fitted order changed) makes it redraw with the new ones
                yield gr.update(value=shown, color_map=colours), note, frame
        except (ValueError, FileNotFoundError) as exc:
            raise errors_as_gradio(exc, "errors") from None

    handler = named(gpu(lambda *v: gpu_seconds(dict(zip(PARAMS, v)), limits))(errors), PARAMS)
    event = run.click(handler, [ctx["model"], ctx["class_label"], ctx["guidance_scale"], ctx["guidance_rescale"],
                                ctx["rescale_betas_zero_snr"], seed, num_images, nfe, *slots],
                      [plot, status, table], api_name="errors", concurrency_id=ctx["concurrency_id"],
                      concurrency_limit=ctx["concurrency_limit"], preprocess=False, show_progress="minimal",
                      show_progress_on=status,
                      api_description="Error against model evaluations for up to 4 set-ups (sampler_i, order_i, "
                                      "spacing_i) at the NFE targets `nfe`, streamed one run at a time; returns "
                                      "(plot as {value, color_map}, status, table) with one table row per run: "
                                      + ", ".join(COLUMNS))
    stop.click(None, None, None, cancels=[event], api_visibility="private")
