"""The sampler lab's Gradio app: stream every denoising step, compare samplers from the same noise.

    python app.py            # host/port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (default 7860)

The page only draws controls; validation, models and the sampling loops live in ``lab.py``.
Controls are generated from the sampler registry (``samplers.OPTIONS`` and each method's
options and choices), so a newly registered sampler shows up with its own controls.
Named API endpoints: ``/generate``, ``/compare`` and one per view in ``views/`` (see README).
"""
from __future__ import annotations

# ZeroGPU wants `spaces` imported before torch (views.common imports it first); elsewhere it is absent.
from views.common import cancel_watch, errors_as_gradio, gpu, named, sampler_choices, session_key, spaces  # noqa: I001

import math
import os
import random
import time
from collections import OrderedDict

import gradio as gr
import pandas as pd   # comes with gradio

import lab
import samplers
import views.errors
import views.schedule
import views.teaching
import views.training_set

TITLE = "Sampler Lab"
CSS = """
#preview img, #compare-preview img, .pixelated img { image-rendering: pixelated; }
.hint { opacity: 0.75; font-size: 0.9em; }
"""
THEME = gr.themes.Soft()
ROW_FIELDS = ("sampler", "steps", "order", "eta", "spacing")   # the controls of one compare set-up
# (title, build(ctx)) of the explanatory tabs (views/), drawn after Generate and Compare; ctx holds the
# shared controls.
EXTRA_TABS: list = [("Schedule", views.schedule.tab), ("2-D", views.teaching.tab),
                    ("Error vs steps", views.errors.tab), ("Network vs training set", views.training_set.tab)]
DEFAULT_ROWS = ("ddim", "unipc", "ipndm", "euler", "dpm++2s-a", "plms")
COMPARE_COLUMNS = ("set-up", "sampler", "NFE", "finished at (s into the shared batch)", "distance")
TRACE_COLUMNS = ("nfe", "t", "sigma", "change", "x0_change", "x0_to_final", "x_rms", "x0_rms")
CHANGE_SERIES = {"change": "sample x: |x_i - x_i-1| / |x_i|", "x0_change": "x0: |x0_i - x0_i-1| / |x0_i|",
                 "x0_to_final": "x0 to the final image: |x0_i - x| / |x|"}
NORM_SERIES = {"x_rms": "sample x", "x0_rms": "predicted x0"}
TRACE_WHILE_RUNNING = ("The trace appears when the run ends.", None, None, None, None)
# The latest run of each (session, tab), so the page's Stop can say where it stopped and keep what ran.
LIVE: OrderedDict = OrderedDict()
LIVE_SIZE = 256


def live_run(kind: str) -> lab.Live:
    live = lab.Live()
    key = session_key(kind)
    if key is not None:
        LIVE[key] = live
        LIVE.move_to_end(key)
        while len(LIVE) > LIVE_SIZE:
            LIVE.popitem(last=False)
    return live


def stopped_run(kind: str, wait: float = 20.0) -> lab.Live | None:
    """This session's latest run of ``kind`` once its Stop has landed; None if nothing was stopped."""
    live = LIVE.get(session_key(kind))
    if live is None or live.record is None:
        return None
    deadline = time.time() + wait
    while live.record.status == "running" and time.time() < deadline:
        time.sleep(0.01)
    return live if live.record.status == "stopped" else None


# ---------------------------------------------------------------------------------------------
# Controls built from the registry


def option_component(option: samplers.Option):
    """A control whose empty value (None) means "this sampler's own default"."""
    label = lab.param_name(option.name)
    common = dict(label=label, info=option.help, value=None, visible=False)
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


def sampler_summary(name: str, steps) -> str:
    m = samplers.REGISTRY.get(name)
    if m is None:
        return ""
    kind = "stochastic (for some settings)" if m.stochastic else "deterministic"
    return f"**{m.title}** — {m.paper}. Order {m.order}, {kind}."


def option_updates(info: lab.ModelInfo | None, method_name: str, options: list[samplers.Option]):
    """Visibility, narrowed choices and this model's default value for every option control."""
    applies = lab.method_applies(method_name) if method_name in samplers.REGISTRY else set()
    defaults = {}
    if info is not None and method_name in samplers.REGISTRY:
        try:
            defaults = lab.default_options(info, method_name)
        except ValueError:
            defaults = {}
    updates = []
    for o in options:
        if o.name not in applies:
            updates.append(gr.update(visible=False, value=None))
            continue
        kw = dict(visible=True, value=lab.jsonable(defaults.get(o.name)))
        choices = lab.option_choices(o, method_name)
        if choices is not None and o.kind is not bool:
            kw["choices"] = list(choices)
        updates.append(gr.update(**kw))
    unused = [lab.param_name(o.name) for o in options if o.name not in applies]
    main = [n for n in unused if n in lab.MAIN_PARAMS]
    hint = ""
    if unused:
        hint = f"Hidden because {method_name} does not use them: {', '.join(main) or 'no main option'}"
        hint += f" and {len(unused) - len(main)} more." if len(unused) > len(main) else "."
    return updates, hint


# ---------------------------------------------------------------------------------------------
# The page


def build_app(limits: lab.Limits | None = None) -> gr.Blocks:
    limits = limits or lab.Limits.from_env()
    options = lab.request_options()
    start_model, start_notice = lab.initial_model()
    choices, missing = lab.offered_models(limits)
    gen_params = lab.generate_params()

    with gr.Blocks(title=TITLE, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\nWatch a diffusion sampler denoise step by step, and compare samplers from the "
                    "same noise. Every control maps to the `samplers` package: the run's settings and the "
                    "Python that repeats it are shown under each result.")
        notice = gr.Markdown(f"⚠️ {start_notice}" if start_notice else "", visible=bool(start_notice))
        with gr.Row():
            model = gr.Dropdown(choices=choices, value=start_model, label="model",
                                allow_custom_value=lab.allow_any_hub_model(), scale=2,
                                info="embedded, analytic (exact answers) or allow-listed hub models that run here")
            model_info = gr.Markdown(lab.model_description(start_model), elem_classes="hint")
        gr.Markdown(missing, elem_classes="hint", elem_id="models-missing", visible=bool(missing))
        working = gr.State(start_model)   # the last model that loaded: where a failed choice returns to
        # Controls are hidden one by one, not through their row: Gradio drops value updates to the
        # children of a row hidden in the same update, and a hidden control still sends its value.
        with gr.Row() as cond_row:
            class_label = gr.Dropdown(choices=["none"], value="none", label="class_label", info="which class to draw")
            guidance_scale = gr.Number(value=None, step=0.5, label="guidance_scale",
                                       info="classifier-free guidance, 0 to 20: 1 = off")
            guidance_rescale = gr.Number(value=None, step=0.05, label="guidance_rescale",
                                         info="pull the guided output's std back to the conditional one's (~0.7)")
            zero_snr = gr.Checkbox(value=False, label="rescale_betas_zero_snr", visible=False,
                                   info="zero terminal SNR (Lin et al.): for v-prediction models trained with it")

        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                gen = _generate_tab(limits, options)
            with gr.Tab("Compare", id="compare"):
                cmp = _compare_tab(limits)
            # The explanatory tabs (EXTRA_TABS, views/) get the shared controls and put their model work
            # in the "model" concurrency group (ctx["concurrency_id"]).
            # model_updates: (component, update(info)) pairs a tab adds, applied whenever the model changes
            ctx = dict(model=model, class_label=class_label, guidance_scale=guidance_scale,
                       guidance_rescale=guidance_rescale, rescale_betas_zero_snr=zero_snr, limits=limits,
                       concurrency_id="model", concurrency_limit=limits.concurrency, model_updates=[])
            for title, build_tab in EXTRA_TABS:
                with gr.Tab(title):
                    build_tab(ctx)

        gr.Markdown(f"Limits on this machine: {limits.describe()}. Set MAX_STEPS, MAX_NFE, MAX_IMAGES, MAX_POINTS, "
                    "MAX_COMPARE, MAX_RESOLUTION, REFERENCE_STEPS, QUEUE_SIZE, MAX_CONCURRENCY, PREVIEW_FPS to change "
                    "them.", elem_classes="hint")

        # -- model: conditioning controls, option defaults of both tabs
        row_outputs = [c for row in cmp["rows"] for c in (row["order"], row["eta"], row["spacing"])]

        def model_changed(model_name, previous, sampler_name, *row_samplers):
            try:
                name = lab.check_model(model_name)
                _, info = lab.load_model(name, limits)
            except (ValueError, FileNotFoundError, OSError) as exc:
                # back to the model that worked (its change event then redraws the controls for it)
                errors_as_gradio(exc, "model")
                skip = [gr.skip()] * (9 + len(options) + len(row_outputs) + len(ctx["model_updates"]))
                back = previous if model_name != previous else lab.initial_model()[0]
                return [gr.update(value=f"⚠️ {exc}. Back to **{back}**.", visible=True), gr.update(value=back),
                        back] + skip
            text = f"**{info.loaded}** — {lab.model_description(info.loaded)}; predicts {info.prediction_type}"
            text += f"; samples of shape {list(info.event_shape)}"
            # an unconditional model still gets a value: a hidden control keeps sending what it holds
            label_choices = ["none"] + list(info.classes or [])
            updates, hint = option_updates(info, sampler_name, options)
            rows = []
            for s in row_samplers:
                rows.extend(_row_updates(info, s))
            count_label = "points" if info.kind == "points" else "images"
            count_max = limits.max_points if info.kind == "points" else limits.max_images
            count_value = min(500, count_max) if info.kind == "points" else 1
            # after a failed choice the warning stays up while the page returns to the working model
            keep = name == previous and not info.notice
            return [
                gr.skip() if keep else gr.update(value=f"⚠️ {info.notice}" if info.notice else "",
                                                 visible=bool(info.notice)),
                gr.update(), name,
                gr.update(value=text),
                gr.update(),   # the row itself is never hidden (see above)
                gr.update(choices=label_choices, value=info.default_class, visible=info.classes is not None),
                gr.update(value=info.default_guidance if info.guidance else None, visible=info.guidance),
                gr.update(value=0.0 if info.guidance else None, visible=info.guidance),
                gr.update(visible=info.prediction_type == "v_prediction", value=False),
                gr.update(label=f"num_images ({count_label})", info=f"1 to {count_max}", value=count_value),
                gr.update(label=f"num_images per set-up ({count_label})", info=f"1 to {count_max}",
                          value=min(count_value, 200)),
                *updates, gr.update(value=hint), *rows, *[update(info) for _, update in ctx["model_updates"]]]

        model_outputs = [notice, model, working, model_info, cond_row, class_label, guidance_scale, guidance_rescale, zero_snr,
                         gen["num_images"], cmp["num_images"], *gen["options"], gen["hint"], *row_outputs,
                         *[component for component, _ in ctx["model_updates"]]]
        model_inputs = [model, working, gen["sampler"]] + [row["sampler"] for row in cmp["rows"]]
        model.change(model_changed, model_inputs, model_outputs, api_visibility="private", show_progress="hidden")
        demo.load(model_changed, model_inputs, model_outputs, api_visibility="private", show_progress="hidden")

        # -- generate
        def sampler_changed(model_name, sampler_name, steps):
            info = _info_or_none(model_name, limits)
            updates, hint = option_updates(info, sampler_name, options)
            return [gr.update(value=sampler_summary(sampler_name, steps)), *updates, gr.update(value=hint)]

        gen["sampler"].change(sampler_changed, [model, gen["sampler"], gen["steps"]],
                              [gen["summary"], *gen["options"], gen["hint"]], api_visibility="private",
                              show_progress="hidden")

        def generate(*values):
            # Every update carries a value for every output: a file path for the preview (the same
            # one until a new preview is drawn) and None for the final outputs until the end.
            # gr.skip() would cost Gradio a new component per output per update (~5 ms a step).
            preview_file = lab.PreviewFile()
            live = live_run("generate")
            try:
                request = lab.parse_generate(dict(zip(gen_params, values)), limits)
                for p in lab.in_background(lambda: lab.generate(request, limits, live=live), cancelled=cancel_watch()):
                    shown = preview_file.update(p.preview)
                    if not p.done:
                        yield shown, p.status(), None, None, None, *TRACE_WHILE_RUNNING
                        continue
                    captions = [f"{request.setup.sampler} · seed {request.seed} · #{i}" for i in range(len(p.images))]
                    notice_text = f"\n\n⚠️ {p.info['notice']}" if p.info.get("notice") else ""
                    note, strip, change, norm, table = trace_outputs(p.trace)
                    yield (shown, p.status() + " · done" + notice_text, list(zip(p.images, captions)),
                           {k: v for k, v in p.info.items() if k not in ("code",)}, p.info["code"],
                           note, preview_file.png(strip, f"trace-{id(p)}"), change, norm, table)
            except (ValueError, FileNotFoundError) as exc:
                raise errors_as_gradio(exc, "generate") from None
            finally:
                preview_file.close()

        def check_page(*values):
            """The page's values, checked before a run is queued. An empty box is refused here (through the
            API an omitted value means the default); every other value as /generate checks it."""
            given = dict(zip(gen_params, values))
            try:
                for name, low, high in (("steps", 1, limits.max_steps), ("seed", 0, lab.MAX_SEED),
                                        ("num_images", 1, max(limits.max_images, limits.max_points))):
                    if given.get(name) in (None, ""):
                        lab.check_int(name, "", low, high)   # raises: "steps='' must be an integer (allowed: ...)"
                lab.parse_generate(given, limits)
            except ValueError as exc:
                raise errors_as_gradio(exc, "generate") from None

        def stop_generate():
            """After Stop: where the run stopped, its last picture and the trace of what ran."""
            live = stopped_run("generate")
            if live is None:
                return [gr.skip()] * 7
            step = live.latest[0]
            shown = None if step is None else lab.preview(step.x, step.x0, live.info)
            trace = trace_outputs(live.tracer.result()) if live.tracer.kept else TRACE_WHILE_RUNNING
            return (shown, live.stopped_status(), *trace)

        generate = named(gpu(lambda *v: lab.generate_gpu_seconds(dict(zip(gen_params, v)), limits))(generate),
                         gen_params)
        gen_inputs = [model, gen["sampler"], gen["steps"], gen["seed"], gen["num_images"], class_label,
                      guidance_scale, guidance_rescale, zero_snr, *gen["options"]]
        # queued (the page shows a queued event's error as a message; not one of a queue=False event)
        checked = gen["run"].click(check_page, gen_inputs, None, api_visibility="private", concurrency_limit=None,
                                   preprocess=False, show_progress="hidden")   # raw values: a Number's preprocessing would round 2.5 to 3
        gen_event = checked.success(
            generate, gen_inputs,
            [gen["preview"], gen["status"], gen["gallery"], gen["settings"], gen["code"], *gen["trace"]],
            api_name="generate", concurrency_id="model", concurrency_limit=limits.concurrency, preprocess=False,
            show_progress="minimal", show_progress_on=gen["status"],
            api_description="Sample with one sampler, streaming the noisy sample | predicted x0 preview, "
                            "step i/N, NFE, t and sigma after every model evaluation; at the end the images, "
                            "settings, code and the run's trace (x0 strip, change and RMS plots, one row "
                            "per evaluation).")
        # two listeners: the cancel goes out at once; the report waits for it to land (one listener with
        # both would send the cancel only after the report returned)
        gen["stop"].click(None, None, None, cancels=[gen_event], api_visibility="private")
        gen["stop"].click(stop_generate, None, [gen["preview"], gen["status"], *gen["trace"]], api_name="stop_generate", api_visibility="undocumented",
                          concurrency_limit=None, show_progress="hidden")
        gen["dice"].click(lambda: random.randint(0, 2**31 - 1), None, gen["seed"], api_visibility="private",
                          queue=False)

        # -- compare
        for row in cmp["rows"]:
            row["sampler"].change(lambda m, s: _row_updates(_info_or_none(m, limits), s), [model, row["sampler"]],
                                  [row["order"], row["eta"], row["spacing"]], api_visibility="private",
                                  show_progress="hidden")

        def show_rows(count):
            return [gr.update(visible=i < int(count or 0)) for i in range(limits.max_compare)]

        cmp["count"].change(show_rows, cmp["count"], [row["box"] for row in cmp["rows"]], api_visibility="private",
                            queue=False)

        def collect(count, *values):
            setups = []
            for i in range(int(count or 0)):
                entry = dict(zip(ROW_FIELDS, values[i * len(ROW_FIELDS):(i + 1) * len(ROW_FIELDS)]))
                if entry["steps"] in (None, ""):   # an empty box is told, not run at a default
                    try:
                        lab.check_int("steps", entry["steps"], 1, limits.max_steps)
                    except ValueError as exc:
                        raise errors_as_gradio(ValueError(f"setups[{i}]: {exc}"), "compare") from None
                setups.append({k: v for k, v in entry.items() if v is not None and v != ""})
            return setups

        compare_params = list(lab.COMPARE_PARAMS)

        def compare(*values):
            preview_file = lab.PreviewFile()   # see generate() for why every update carries values
            live = live_run("compare")
            try:
                request = lab.parse_compare(dict(zip(compare_params, values)), limits)
                for p in lab.in_background(lambda: lab.compare(request, limits, live=live), cancelled=cancel_watch()):
                    shown = preview_file.update(p.preview)
                    if not p.done:
                        yield shown, p.message, None, None, None
                        continue
                    gallery = []
                    for r, pics in zip(p.results, p.images):
                        dist = "" if r["distance"] is None else f" · d={r['distance']:.4g}"
                        gallery += [(img, f"{r['setup']}: {r['label']} · NFE {r['nfe']} · done at {r['finished_at_seconds']:.2f} s{dist}")
                                    for img in pics]
                    table = lab.tables.styled(pd.DataFrame(
                        [[r["setup"], r["label"], r["nfe"], r["finished_at_seconds"], r["distance"]] for r in p.results],
                        columns=list(COMPARE_COLUMNS)))
                    # the set-ups share one batch per round: a row's time is when it finished inside it
                    note = (f"batch done in {p.seconds:.3g} s (all set-ups together, one forward pass per round); "
                            f"each row's time is when it finished inside that shared batch")
                    if p.info.get("reference"):
                        note += f"; distance d = RMS difference to {p.info['reference']}"
                    if p.info.get("notice"):
                        note += f"\n\n⚠️ {p.info['notice']}"
                    yield shown, note, gallery, table, p.info
            except (ValueError, FileNotFoundError) as exc:
                raise errors_as_gradio(exc, "compare") from None
            finally:
                preview_file.close()

        def stop_compare():
            """After Stop: where each set-up stopped, and their last pictures."""
            live = stopped_run("compare")
            if live is None:
                return gr.skip(), gr.skip()
            shown = [st for st in live.latest if st is not None]
            panel = 128 if live.info.kind == "image" else 160
            picture = lab.stack([lab.preview(st.x, st.x0, live.info, target=panel) for st in shown]) if shown else None
            return picture, live.stopped_status()

        compare = named(gpu(lambda *v: lab.compare_gpu_seconds(dict(zip(compare_params, v)), limits))(compare),
                        compare_params)
        row_values = [row[f] for row in cmp["rows"] for f in ROW_FIELDS]
        collected = cmp["run"].click(collect, [cmp["count"], *row_values], cmp["setups"], api_visibility="private",
                                     concurrency_limit=None, preprocess=False,   # raw: as typed, not rounded
                                     show_progress="hidden")
        cmp_event = collected.success(
            compare, [model, cmp["setups"], cmp["seed"], cmp["num_images"], class_label, guidance_scale,
                      guidance_rescale, zero_snr, cmp["reference"]],
            [cmp["preview"], cmp["status"], cmp["gallery"], cmp["table"], cmp["info"]],
            api_name="compare", concurrency_id="model", concurrency_limit=limits.concurrency, preprocess=False,
            show_progress="minimal", show_progress_on=cmp["status"],
            api_description="Run up to MAX_COMPARE sampler set-ups from the same noise, batched through the "
                            "network; returns the images, NFE, time and distance to a reference per set-up.")
        # two listeners: the cancel goes out at once; the report waits for it to land (one listener with
        # both would send the cancel only after the report returned)
        cmp["stop"].click(None, None, None, cancels=[cmp_event], api_visibility="private")
        cmp["stop"].click(stop_compare, None, [cmp["preview"], cmp["status"]], api_name="stop_compare", api_visibility="undocumented",
                          concurrency_limit=None, show_progress="hidden")
        cmp["dice"].click(lambda: random.randint(0, 2**31 - 1), None, cmp["seed"], api_visibility="private",
                          queue=False)
    demo.limits = limits
    return demo


def trace_outputs(trace: dict) -> tuple:
    """A run's trace (lab.Tracer.result) as the note, x0 strip, two plots and the table under Generate."""
    import pandas as pd   # comes with gradio

    rows = trace["rows"]
    commit = trace["commit_nfe"]
    note = (f"Trace of {trace['about']}. "
            + (f"**Committed at NFE {commit}**: from there on every predicted x0 lies within "
               f"{lab.COMMIT_FRACTION:.0%} of the final image." if commit is not None else
               f"The prediction never settled within {lab.COMMIT_FRACTION:.0%} of the final image."))
    # PIL's built-in font has no Greek letters: "sigma" spelled out
    strip = lab.labelled_strip([(picture, f"NFE {nfe}", f"sigma {sigma:.0f}" if sigma >= 100 else f"sigma {sigma:.3g}")
                                   for nfe, sigma, picture in trace["thumbnails"]])
    # log10 of a change of exactly 0 (the last x0 against the result itself) has no value: left out
    change = pd.DataFrame([dict(nfe=r["nfe"], series=label, log10_value=math.log10(r[key]))
                           for key, label in CHANGE_SERIES.items() for r in rows
                           if r[key] is not None and 0 < r[key] < math.inf],
                          columns=["nfe", "series", "log10_value"])
    norm = pd.DataFrame([dict(nfe=r["nfe"], series=label, value=r[key])
                         for key, label in NORM_SERIES.items() for r in rows if r[key] is not None],
                        columns=["nfe", "series", "value"])
    table = lab.tables.styled(pd.DataFrame([[r[c] for c in TRACE_COLUMNS] for r in rows], columns=list(TRACE_COLUMNS)))
    return note, strip, change, norm, table


def _info_or_none(model_name, limits):
    try:
        return lab.load_model(lab.check_model(model_name), limits)[1]
    except (ValueError, FileNotFoundError, OSError):
        return None


def _row_updates(info, method_name):
    """order / eta / spacing of one compare row: shown only when the sampler uses them, at its defaults."""
    opts = [lab.option_of(p) for p in ("order", "eta", "spacing")]
    updates, _ = option_updates(info, method_name, opts)
    return updates


def _generate_tab(limits: lab.Limits, options):
    names = list(samplers.REGISTRY)
    first = "ddim" if "ddim" in names else names[0]
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            sampler = gr.Dropdown(choices=sampler_choices(), value=first, label="sampler")
            summary = gr.Markdown(sampler_summary(first, 20), elem_classes="hint")
            # Numbers without minimum / maximum: Gradio clamps a typed value silently; lab refuses it by name
            steps = gr.Number(value=25, precision=0, label="steps", info=f"1 to {limits.max_steps}",
                              elem_id="generate-steps")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="seed", scale=4)
                dice = gr.Button("random seed", scale=1, min_width=60)
            num_images = gr.Number(value=1, precision=0, label="num_images", info=f"1 to {limits.max_images}",
                                   elem_id="generate-num-images")
            main = [o for o in options if lab.is_main(o)]
            more = [o for o in options if not lab.is_main(o)]
            comps = {}
            for o in main:
                comps[o.name] = option_component(o)
            with gr.Accordion("More sampler options", open=False):
                for o in more:
                    comps[o.name] = option_component(o)
            hint = gr.Markdown("", elem_classes="hint")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate-button")
                stop = gr.Button("Stop", variant="stop", elem_id="generate-stop")
        with gr.Column(scale=3):
            preview = gr.Image(label="noisy sample | predicted x0", format="jpeg", interactive=False,
                               elem_id="preview", height=300)
            status = gr.Markdown("Press Generate.", elem_id="generate-status")
            gallery = gr.Gallery(label="final images (PNG)", format="png", columns=4, height=280, preview=False,
                                 buttons=["download", "download_all", "fullscreen"], elem_classes="pixelated",
                                 object_fit="contain", fit_columns=False)
            with gr.Accordion("Settings of this run (seed and every option) and the Python that repeats it",
                              open=False):
                settings = gr.JSON(label="settings")
                code = gr.Code(language="python", label="repeat with the samplers package")
    with gr.Accordion("How the picture formed: the predicted x0 along the run, per-step change and norms", open=True):
        trace_note = gr.Markdown("After a run: the model's guess of the clean image (x0) at every few steps, and "
                                 "how much the sample and the guess still change.", elem_id="trace-note",
                                 elem_classes="hint")
        trace_strip = gr.Image(label="predicted x0 along the run (NFE, sigma)", format="png", interactive=False,
                               elem_id="trace-strip", elem_classes="pixelated", show_label=False, height=120)
        with gr.Row():
            trace_change = gr.LinePlot(x="nfe", y="log10_value", color="series", label="per-step change (relative)",
                                       x_title="model evaluation (NFE)", y_title="log10 relative change",
                                       elem_id="trace-change")
            trace_norm = gr.LinePlot(x="nfe", y="value", color="series", label="RMS of the sample and of x0",
                                     x_title="model evaluation (NFE)", y_title="RMS", elem_id="trace-norm")
        with gr.Accordion("trace data: one row per model evaluation", open=False):
            trace_table = gr.Dataframe(headers=list(TRACE_COLUMNS), interactive=False, elem_id="trace-table")
    gr.Examples(examples=[["ddim", 25, 0], ["unipc", 10, 1], ["ddpm", 100, 2]] if "unipc" in names
                else [["ddim", 25, 0], ["ddpm", 100, 2]],
                inputs=[sampler, steps, seed], cache_examples=False, label="Try")
    return dict(sampler=sampler, summary=summary, steps=steps, seed=seed, dice=dice, num_images=num_images,
                options=[comps[o.name] for o in options], hint=hint, run=run, stop=stop, preview=preview,
                status=status, gallery=gallery, settings=settings, code=code,
                trace=[trace_note, trace_strip, trace_change, trace_norm, trace_table])


def _compare_tab(limits: lab.Limits):
    names = list(samplers.REGISTRY)
    wanted = [n for n in DEFAULT_ROWS if n in names] + [n for n in names if n not in DEFAULT_ROWS]
    gr.Markdown("Each set-up starts from the same noise. Evaluations that fall in the same round go through "
                "the network as one batch, with per-row timesteps; each result equals its solo run.",
                elem_classes="hint")
    count = gr.Slider(1, limits.max_compare, value=min(4, limits.max_compare), step=1, label="set-ups")
    rows = []
    for i in range(limits.max_compare):
        with gr.Row(visible=i < min(4, limits.max_compare)) as box:
            sampler = gr.Dropdown(choices=sampler_choices(), value=wanted[i % len(wanted)], label=f"{i + 1}: sampler",
                                  scale=3)
            steps = gr.Number(value=10, precision=0, label="steps", scale=1, elem_id=f"compare-steps-{i + 1}")
            order = option_component(lab.option_of("order"))
            eta = option_component(samplers.OPTIONS["eta"])
            spacing = option_component(samplers.OPTIONS["spacing"])
        rows.append(dict(box=box, sampler=sampler, steps=steps, order=order, eta=eta, spacing=spacing))
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="seed", scale=4)
        dice = gr.Button("random seed", scale=1, min_width=60)
        num_images = gr.Number(value=1, precision=0, label="num_images per set-up", scale=4,
                               info=f"1 to {limits.max_images}")
        reference = gr.Checkbox(value=False, label="distance to a reference",
                                info="exact for the Gaussian; else a many-step solve, cached per model and seed")
    with gr.Row():
        run = gr.Button("Compare", variant="primary", elem_id="compare-button")
        stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
    preview = gr.Image(label="one row per set-up: noisy sample | predicted x0", format="jpeg", interactive=False,
                       elem_id="compare-preview")
    status = gr.Markdown("", elem_id="compare-status")
    gallery = gr.Gallery(label="final images (PNG)", format="png", columns=6, height=300, preview=False,
                         buttons=["download", "download_all", "fullscreen"], elem_classes="pixelated",
                         object_fit="contain", fit_columns=False)
    table = gr.Dataframe(headers=list(COMPARE_COLUMNS), interactive=False, label="results")
    with gr.Accordion("Details (JSON): the set-ups as /compare takes them, and the results", open=False):
        setups = gr.JSON(label="setups", value=[])
        info = gr.JSON(label="results")
    return dict(count=count, rows=rows, seed=seed, dice=dice, num_images=num_images, reference=reference, run=run,
                stop=stop, preview=preview, status=status, gallery=gallery, table=table, setups=setups, info=info)


def launch(demo: gr.Blocks, **kwargs):
    """Queue (one concurrency id for model work, bounded) and launch with the app's theme and CSS."""
    limits = getattr(demo, "limits", None) or lab.Limits.from_env()
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return demo.launch(theme=THEME, css=CSS, **kwargs)


if __name__ == "__main__":
    if spaces is not None and os.environ.get("SPACES_ZERO_GPU"):
        # ZeroGPU runs each GPU call in a fresh worker: load the model here, once, so it is not
        # reloaded per call (spaces moves module-level CUDA tensors to the GPU it lends).
        lab.load_model(lab.initial_model()[0])
    launch(build_app())
