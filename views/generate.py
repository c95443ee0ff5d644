"""The Generate tab's controls: two columns, the controls that matter and the run button on the left,
the streaming preview on the right (sticky, so it stays in view while the run streams).

Controls come from the sampler registry (``samplers.OPTIONS`` and each method's options and
choices), so a newly registered sampler shows up with its own controls. Labels are words
(views.explain.LABELS); the API keeps its parameter names.
"""
from __future__ import annotations

import gradio as gr

import lab
import samplers
from views import explain
from views.common import sampler_choices

ORDER_OPTION = "order"   # the kernel's name of the order option (issue 12)
TRACE_WHILE_RUNNING = ("The trace appears when the run ends.", None, None, None, None)


def option_component(option: samplers.Option):
    """A control whose empty value (None) means "this sampler's own default"."""
    common = dict(label=explain.label(option.name), info=option.help, value=None, visible=False)
    choices = lab.option_choices(option)
    if option.kind is bool:
        return gr.Radio(choices=[("on", True), ("off", False)], **common)
    if option.kind is str and choices is not None:
        return gr.Dropdown(choices=list(choices), **common)
    if option.kind is int and choices is not None:
        return gr.Radio(choices=list(choices), **common)
    if option.kind is list:
        return gr.Textbox(placeholder="descending train timesteps, e.g. 999, 700, 400, 100", **common)
    # no minimum / maximum: Gradio would clamp a typed value silently; lab checks it and says what is allowed
    return gr.Number(precision=0 if option.kind is int else None, step=1 if option.kind is int else 0.05, **common)


def shown_for_spacing(option_name: str, spacing) -> bool:
    """rho / sigma_min / sigma_max / ... only where the grid reads them."""
    grids = explain.SPACING_ONLY.get(option_name)
    return grids is None or spacing in grids


def option_updates(info: lab.ModelInfo | None, method_name: str, options: list[samplers.Option]):
    """Visibility, narrowed choices and this model's default value for every option control, and a hint."""
    applies = lab.method_applies(method_name) if method_name in samplers.REGISTRY else set()
    defaults = {}
    if info is not None and method_name in samplers.REGISTRY:
        try:
            defaults = lab.default_options(info, method_name)
        except ValueError:
            defaults = {}
    spacing = defaults.get("spacing")
    updates = []
    for o in options:
        if o.name not in applies:
            updates.append(gr.update(visible=False, value=None))
            continue
        kw = dict(visible=shown_for_spacing(o.name, spacing), value=lab.jsonable(defaults.get(o.name)))
        choices = lab.option_choices(o, method_name)
        if choices is not None and o.kind is not bool:
            kw["choices"] = list(choices)
        updates.append(gr.update(**kw))
    unused = [explain.label(o.name) for o in options if o.name not in applies]
    hint = f"{len(unused)} options {method_name} does not use are hidden." if unused else ""
    return updates, hint


def spacing_updates(method_name: str, spacing, options: list[samplers.Option]):
    """After a spacing change: show the grid options that spacing reads, hide the others (values kept)."""
    applies = lab.method_applies(method_name) if method_name in samplers.REGISTRY else set()
    return [gr.update(visible=o.name in applies and shown_for_spacing(o.name, spacing)) if o.name in
            explain.SPACING_ONLY else gr.skip() for o in options]


def nfe_text(info: lab.ModelInfo | None, request: lab.GenerateRequest | None, limits: lab.Limits) -> str:
    """The steps' model evaluations with the reason, for the set-up as it would run."""
    if info is None or request is None:
        return ""
    try:
        sampler = lab.build_sampler(info, request.setup, request.cond, limits)
    except ValueError:
        return ""
    return explain.nfe_note(sampler.name, sampler.steps, int(sampler.nfe))


def tab(limits: lab.Limits, options: list[samplers.Option]) -> dict:
    names = list(samplers.REGISTRY)
    first = "ddim" if "ddim" in names else names[0]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            sampler = gr.Dropdown(choices=sampler_choices(), value=first, label="Sampler")
            # Numbers without minimum / maximum: Gradio clamps a typed value silently; lab refuses it by name
            steps = gr.Number(value=10, precision=0, label="Steps", elem_id="generate-steps",
                              info=f"1 to {limits.max_steps}; fewer steps: faster, and the samplers differ more")
            nfe = gr.Markdown(explain.nfe_note(first, 10, 10), elem_classes="hint", elem_id="generate-nfe")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate-button", scale=2)
                stop = gr.Button("Stop", variant="stop", elem_id="generate-stop", scale=1)
            # what the sampler does, under the button: a long text must not push the button off the screen
            summary = gr.Markdown(explain.sampler_text(first), elem_classes="hint", elem_id="generate-summary")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed", info="the same seed: the same noise",
                                 scale=3)
                dice = gr.Button("random seed", scale=1, min_width=60)
            num_images = gr.Number(value=1, precision=0, label="Images", elem_id="generate-num-images",
                                   info=f"1 to {limits.max_images}: pictures drawn side by side from one seed")
            main = [o for o in options if lab.is_main(o)]
            more = [o for o in options if not lab.is_main(o)]
            comps = {}
            for o in main:
                comps[o.name] = option_component(o)
            with gr.Accordion("More sampler options", open=False):
                for o in more:
                    comps[o.name] = option_component(o)
            hint = gr.Markdown("", elem_classes="hint")
        with gr.Column(scale=3, elem_id="generate-watch", elem_classes="watch"):
            preview = gr.Image(label="noisy sample | predicted x0 (every model evaluation)", format="jpeg",
                               interactive=False, elem_id="preview", height=300)
            status = gr.Markdown("Press Generate to watch the sampler step by step.", elem_id="generate-status")
            gallery = gr.Gallery(label="Final images (PNG)", format="png", columns=4, height="auto", preview=False,
                                 buttons=["download", "download_all", "fullscreen"], elem_classes="pixelated",
                                 object_fit="contain", fit_columns=False, elem_id="generate-gallery")
            with gr.Accordion("Settings of this run (API names) and the Python that repeats it", open=False):
                settings = gr.JSON(label="Settings")
                code = gr.Code(language="python", label="Repeat with the samplers package")
    with gr.Accordion("How the picture formed: the predicted x0 along the run, per-step change and norms", open=True):
        trace_note = gr.Markdown("After a run: the model's guess of the clean image (x0) at every few steps, and "
                                 "how much the sample and the guess still change.", elem_id="trace-note",
                                 elem_classes="hint")
        trace_strip = gr.Image(label="predicted x0 along the run (NFE, sigma)", format="png", interactive=False,
                               elem_id="trace-strip", elem_classes="pixelated", show_label=False, height=120)
        with gr.Row():
            trace_change = gr.Plot(label="Per-step change (relative, log scale)", elem_id="trace-change")
            trace_norm = gr.Plot(label="RMS of the sample and of x0", elem_id="trace-norm")
        with gr.Accordion("Trace data: one row per model evaluation", open=False):
            trace_table = gr.Dataframe(interactive=False, elem_id="trace-table")
    return dict(sampler=sampler, summary=summary, steps=steps, nfe=nfe, seed=seed, dice=dice, num_images=num_images,
                options=[comps[o.name] for o in options], hint=hint, run=run, stop=stop, preview=preview,
                status=status, gallery=gallery, settings=settings, code=code,
                trace=[trace_note, trace_strip, trace_change, trace_norm, trace_table])
