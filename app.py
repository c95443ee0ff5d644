"""The sampler lab's Gradio app: stream every denoising step, compare samplers from the same noise.

    python app.py            # host/port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (default 7860)

The page assembles the tabs (views/compare.py, views/generate.py and the explanatory views) around
the shared model block and wires them; validation, models and the sampling loops live in the ``lab``
package. Named API endpoints: ``/generate``, ``/compare`` and one per view in ``views/`` (see README).
"""
from __future__ import annotations

# ZeroGPU wants `spaces` imported before torch (views.common imports it first); elsewhere it is absent.
from views.common import cancel_watch, errors_as_gradio, gpu, named, session_key, spaces  # noqa: I001

import os
import random
import time
from collections import OrderedDict

import gradio as gr
import pandas as pd   # comes with gradio

import lab
import samplers
import views.compare
import views.errors
import views.generate
import views.schedule
import views.teaching
import views.training_set
from views import explain
from views.generate import TRACE_WHILE_RUNNING, option_updates, spacing_updates
from views.plots import trace_figures

TITLE = "Sampler Lab"
CSS = """
#preview img, #compare-preview img, .pixelated img { image-rendering: pixelated; }
.hint { opacity: 0.8; font-size: 0.9em; }
/* the preview column stays in view while the controls beside it scroll */
@media (min-width: 900px) { .watch { position: sticky; top: 8px; align-self: flex-start; } }
/* gallery captions under the picture, not over it */
.pixelated .thumbnail-item { aspect-ratio: auto !important; height: auto !important; overflow: visible !important;
                             display: flex; flex-direction: column; }
.pixelated .thumbnail-item .caption-label { position: static !important; max-width: 100% !important; }
"""
THEME = gr.themes.Soft()
ROW_FIELDS = views.compare.ROW_FIELDS
# (title, build(ctx), uses the shared model block) of the explanatory tabs (views/), after Compare and Generate
EXTRA_TABS: list = [("Schedule", views.schedule.tab, True), ("2-D", views.teaching.tab, False),
                    ("Error vs steps", views.errors.tab, True),
                    ("Network vs training set", views.training_set.tab, False)]
TRACE_COLUMNS = ("nfe", "t", "sigma", "change", "x0_change", "x0_to_final", "x_rms", "x0_rms")
CHANGE_SERIES = {"change": "sample x: |x_i - x_i-1| / |x_i|", "x0_change": "x0: |x0_i - x0_i-1| / |x0_i|",
                 "x0_to_final": "x0 to the final image: |x0_i - x| / |x|"}
NORM_SERIES = {"x_rms": "sample x", "x0_rms": "predicted x0"}
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


def stop_watch(live: lab.Live):
    """True once this request is cancelled or the page's Stop has asked this run to stop."""
    cancelled = cancel_watch()
    return lambda: live.stop_requested or cancelled()


def stopped_run(kind: str, wait: float = 20.0) -> lab.Live | None:
    """This session's latest run of ``kind`` once its Stop has landed; None if nothing was stopped."""
    live = LIVE.get(session_key(kind))
    if live is None or live.record is None:
        return None
    # the page's cancel may reach Gradio only after this handler returns: the run is told directly too
    live.stop_requested = True
    deadline = time.time() + wait
    while live.record.status == "running" and time.time() < deadline:
        time.sleep(0.01)
    return live if live.record.status == "stopped" else None


# ---------------------------------------------------------------------------------------------
# The page


def build_app(limits: lab.Limits | None = None) -> gr.Blocks:
    limits = limits or lab.Limits.from_env()
    options = lab.request_options()
    start_model, start_notice = lab.initial_model()
    choices, missing = lab.offered_models(limits)
    gen_params = lab.generate_params()

    with gr.Blocks(title=TITLE, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\nDiffusion samplers turn noise into a picture in a few model evaluations. Here they "
                    "start from the same noise, so every difference you see is the sampler's. **Compare** them "
                    "side by side, watch one step by step in **Generate**, and see why in the other tabs.")
        notice = gr.Markdown(f"⚠️ {start_notice}" if start_notice else "", visible=bool(start_notice))
        # the model block: hidden on the tabs that have their own model (2-D, Network vs training set).
        # Controls are hidden one by one, not through their row: Gradio drops value updates to the
        # children of a row hidden in the same update, and a hidden control still sends its value.
        # Numbers without minimum / maximum: Gradio clamps a typed value silently; lab refuses it by name.
        with gr.Group(elem_id="model-block") as model_block:
            with gr.Row():
                model = gr.Dropdown(choices=choices, value=start_model, label="Model",
                                    allow_custom_value=lab.allow_any_hub_model(), scale=2,
                                    info="embedded, analytic (exact answers) or allow-listed hub models that run here")
                class_label = gr.Dropdown(choices=["none"], value="none", label="Class", scale=2,
                                          info="which kind of picture to draw")
                guidance_scale = gr.Number(value=None, step=0.5, label="Guidance scale",
                                           info="classifier-free guidance, 0 to 20: 1 = off", scale=1)
                guidance_rescale = gr.Number(value=None, step=0.05, label="Guidance rescale",
                                             info="pull guided contrast back, 0 to 1 (~0.7)", scale=1)
                zero_snr = gr.Checkbox(value=False, label="Zero terminal SNR", visible=False, scale=1,
                                       info="for v-prediction models trained with it (Lin et al.)")
            model_info = gr.Markdown(lab.model_description(start_model), elem_classes="hint",
                                     elem_id="model-info")
            gr.Markdown(missing, elem_classes="hint", elem_id="models-missing", visible=bool(missing))
        working = gr.State(start_model)   # the last model that loaded: where a failed choice returns to

        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):
            with gr.Tab("Compare", id="compare") as compare_tab:
                cmp = views.compare.tab(limits)
            with gr.Tab("Generate", id="generate") as generate_tab:
                gen = views.generate.tab(limits, options)
            # The explanatory tabs (EXTRA_TABS, views/) get the shared controls and put their model work
            # in the "model" concurrency group (ctx["concurrency_id"]).
            # model_updates: (component, update(info)) pairs a tab adds, applied whenever the model changes
            ctx = dict(model=model, class_label=class_label, guidance_scale=guidance_scale,
                       guidance_rescale=guidance_rescale, rescale_betas_zero_snr=zero_snr, limits=limits,
                       concurrency_id="model", concurrency_limit=limits.concurrency, model_updates=[])
            tabs = [(compare_tab, True), (generate_tab, True)]
            for title, build_tab, shared in EXTRA_TABS:
                with gr.Tab(title) as extra:
                    build_tab(ctx)
                tabs.append((extra, shared))
        for tab, shared in tabs:
            tab.select(lambda shared=shared: gr.update(visible=shared), None, model_block, api_visibility="private",
                       queue=False, show_progress="hidden")

        gr.Markdown(f"Limits on this machine: {limits.describe()}.", elem_classes="hint")

        # -- model: conditioning controls, option defaults of both tabs
        row_outputs = [c for row in cmp["rows"] for c in (row["order"], row["eta"], row["spacing"])]

        def model_changed(model_name, previous, current_class, sampler_name, *row_samplers, keep_class=True):
            try:
                name = lab.check_model(model_name)
                _, info = lab.load_model(name, limits)
            except (ValueError, FileNotFoundError, OSError) as exc:
                # back to the model that worked: every other control is left as it was drawn for it
                errors_as_gradio(exc, "model")
                skip = [gr.skip()] * (7 + len(options) + len(row_outputs) + len(ctx["model_updates"]))
                back = previous if model_name != previous else lab.initial_model()[0]
                return [gr.update(value=f"⚠️ {exc}. Back to **{back}**.", visible=True), gr.update(value=back),
                        back] + skip
            text = f"**{info.loaded}** — {lab.model_description(info.loaded)}; predicts {info.prediction_type}"
            text += f"; samples of shape {list(info.event_shape)}"
            # an unconditional model still gets a value: a hidden control keeps sending what it holds
            label_choices = ["none"] + list(info.classes or [])
            class_value = info.default_class
            if keep_class and current_class in label_choices:
                class_value = current_class    # switching model keeps the class where the new one has it
            elif info.classes is not None and current_class not in (None, "", "none"):
                text += f". Class set to {class_value}: this model has no class {current_class!r}"
            updates, hint = option_updates(info, sampler_name, options)
            rows = []
            for s in row_samplers:
                rows.extend(_row_updates(info, s))
            count_label = "Points" if info.kind == "points" else "Images"
            count_max = limits.max_points if info.kind == "points" else limits.max_images
            count_value = min(500, count_max) if info.kind == "points" else 1
            # after a failed choice the warning stays up while the page returns to the working model
            keep = name == previous and not info.notice
            return [
                gr.skip() if keep else gr.update(value=f"⚠️ {info.notice}" if info.notice else "",
                                                 visible=bool(info.notice)),
                gr.update(), name,
                gr.update(value=text),
                gr.update(choices=label_choices, value=class_value, visible=info.classes is not None),
                gr.update(value=info.default_guidance if info.guidance else None, visible=info.guidance),
                gr.update(value=0.0 if info.guidance else None, visible=info.guidance),
                gr.update(visible=info.prediction_type == "v_prediction", value=False),
                gr.update(label=count_label, info=f"1 to {count_max}", value=count_value),
                gr.update(label=f"{count_label} per set-up", info=f"1 to {count_max}",
                          value=min(views.compare.DEFAULT_IMAGES, count_max) if info.kind == "image"
                          else min(count_value, 200)),
                *updates, gr.update(value=hint), *rows, *[update(info) for _, update in ctx["model_updates"]]]

        model_outputs = [notice, model, working, model_info, class_label, guidance_scale, guidance_rescale, zero_snr,
                         gen["num_images"], cmp["num_images"], *gen["options"], gen["hint"], *row_outputs,
                         *[component for component, _ in ctx["model_updates"]]]
        model_inputs = [model, working, class_label, gen["sampler"]] + [row["sampler"] for row in cmp["rows"]]
        # .input, not .change: a failed choice sets the dropdown back to the working model without a reload
        model.input(model_changed, model_inputs, model_outputs, api_visibility="private", show_progress="hidden")
        # the page load: the model's classes and defaults, then the comparison the page opens on
        loaded = demo.load(lambda *v: model_changed(*v, keep_class=False), model_inputs, model_outputs,
                           api_visibility="private", show_progress="hidden")

        def opening(model_name):
            preview_file = lab.PreviewFile()
            try:
                for picture, status, gallery, table, info in views.compare.arrival(model_name, limits):
                    if gallery is None:
                        yield preview_file.update(picture), status, None, None, None
                    else:
                        yield picture, status, gallery, table, info
            except (ValueError, FileNotFoundError) as exc:   # a model that cannot run the opening set-ups
                yield None, f"⚠️ {exc}", None, None, None
            finally:
                preview_file.close()

        loaded.then(opening, [model], [cmp["preview"], cmp["status"], cmp["gallery"], cmp["table"], cmp["info"]],
                    api_visibility="private", concurrency_id="model", concurrency_limit=limits.concurrency,
                    show_progress="minimal", show_progress_on=cmp["status"])

        # -- generate
        gen_inputs = [model, gen["sampler"], gen["steps"], gen["seed"], gen["num_images"], class_label,
                      guidance_scale, guidance_rescale, zero_snr, *gen["options"]]
        spacing_control = gen["options"][[o.name for o in options].index("spacing")]

        def sampler_changed(model_name, sampler_name):
            info = _info_or_none(model_name, limits)
            updates, hint = option_updates(info, sampler_name, options)
            return [gr.update(value=explain.sampler_text(sampler_name)), *updates, gr.update(value=hint)]

        gen["sampler"].input(sampler_changed, [model, gen["sampler"]],
                             [gen["summary"], *gen["options"], gen["hint"]], api_visibility="private",
                             show_progress="hidden", queue=False)
        spacing_control.change(lambda name, spacing: spacing_updates(name, spacing, options),
                               [gen["sampler"], spacing_control], gen["options"], api_visibility="private",
                               show_progress="hidden", queue=False)

        def nfe_changed(*values):
            given = dict(zip(gen_params, values))
            try:
                request = lab.parse_generate(given, limits)
            except (ValueError, FileNotFoundError):
                return gr.update()
            return views.generate.nfe_text(_info_or_none(request.model, limits), request, limits)

        gr.on([gen["sampler"].change, gen["steps"].change, *[c.change for c in gen["options"]]], nfe_changed,
              gen_inputs, gen["nfe"], api_visibility="private", show_progress="hidden", queue=False,
              preprocess=False)   # raw: a class left from the previous model must not fail the dropdown's check

        def generate(*values):
            # Every update carries a value for every output: a file path for the preview (the same
            # one until a new preview is drawn) and None for the final outputs until the end.
            # gr.skip() would cost Gradio a new component per output per update (~5 ms a step).
            preview_file = lab.PreviewFile()
            live = live_run("generate")
            try:
                request = lab.parse_generate(dict(zip(gen_params, values)), limits)
                for p in lab.in_background(lambda: lab.generate(request, limits, live=live), cancelled=stop_watch(live)):
                    shown = preview_file.update(p.preview)
                    if live.stop_requested:   # Stop's own status ("stopped at step k/N") must stay the last word
                        return
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
                            "settings, code and the run's trace (x0 strip, change and RMS plotly figures, one "
                            "row per evaluation).")
        # two listeners: the cancel goes out at once; the report waits for it to land (one listener with
        # both would send the cancel only after the report returned)
        gen["stop"].click(None, None, None, cancels=[gen_event], api_visibility="private")
        gen["stop"].click(stop_generate, None, [gen["preview"], gen["status"], *gen["trace"]], api_name="stop_generate",
                          api_visibility="undocumented", concurrency_limit=None, show_progress="hidden")
        gen["dice"].click(lambda: random.randint(0, 2**31 - 1), None, gen["seed"], api_visibility="private",
                          queue=False)

        # -- compare
        def row_nfe(model_name, sampler_name, steps, order, eta, spacing):
            info = _info_or_none(model_name, limits)
            try:
                spec = lab.check_setup({k: v for k, v in dict(sampler=sampler_name, steps=steps, order=order,
                                                                  eta=eta, spacing=spacing).items()
                                           if v not in (None, "")}, limits)
                sampler = lab.build_sampler(info, spec, lab.Conditioning(), limits) if info else None
            except ValueError:
                return ""
            return "" if sampler is None else explain.nfe_note(sampler.name, sampler.steps, int(sampler.nfe))

        for row in cmp["rows"]:
            row["sampler"].input(lambda m, s: _row_updates(_info_or_none(m, limits), s), [model, row["sampler"]],
                                 [row["order"], row["eta"], row["spacing"]], api_visibility="private",
                                 show_progress="hidden", queue=False)
            fields = [row[f] for f in ROW_FIELDS]
            gr.on([row["sampler"].change, row["steps"].change, row["order"].change, row["spacing"].change,
                   model.change], row_nfe, [model, *fields], row["nfe"], api_visibility="private",
                  show_progress="hidden", queue=False)   # light UI events stay out of the bounded queue

        def show_rows(count):
            return [gr.update(visible=i < int(count or 0)) for i in range(limits.max_compare)]

        cmp["count"].change(show_rows, cmp["count"], [row["box"] for row in cmp["rows"]], api_visibility="private",
                            queue=False)

        def apply_preset(title, model_name):
            info = _info_or_none(model_name, limits)
            setups, text, shared = views.compare.preset(title, limits, info)
            if not setups:
                return [gr.skip()] * (2 + len(cmp["rows"]) * len(ROW_FIELDS) + 3)
            out = [gr.update(value=len(setups)), gr.update(value=text)]
            for i, row in enumerate(cmp["rows"]):
                if i >= len(setups):
                    out += [gr.skip()] * len(ROW_FIELDS)
                    continue
                s = setups[i]
                order, eta, spacing = _row_updates(info, s["sampler"])
                for update, key in ((order, "order"), (eta, "eta"), (spacing, "spacing")):
                    if key in s:
                        update["value"] = s[key]
                out += [gr.update(value=s["sampler"]), gr.update(value=s["steps"]), order, eta, spacing]
            out += [gr.update(value=shared["guidance_scale"]) if "guidance_scale" in shared else gr.skip(),
                    gr.update(value=shared["guidance_rescale"]) if "guidance_rescale" in shared else gr.skip(),
                    gr.update(value=True) if shared.get("rescale_betas_zero_snr") else gr.skip()]
            return out

        cmp["preset"].input(apply_preset, [cmp["preset"], model],
                            [cmp["count"], cmp["preset_note"], *[row[f] for row in cmp["rows"] for f in ROW_FIELDS],
                             guidance_scale, guidance_rescale, zero_snr], api_visibility="private",
                            show_progress="hidden")

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
                for picture, status, gallery, table, info in views.compare.updates(request, limits, stop_watch(live),
                                                                                   live=live):
                    if live.stop_requested:   # Stop's own status must stay the last word
                        return
                    shown = preview_file.update(picture) if gallery is None else picture
                    yield shown, status, gallery, table, info
            except (ValueError, FileNotFoundError) as exc:
                raise errors_as_gradio(exc, "compare") from None
            finally:
                preview_file.close()

        def stop_compare():
            """After Stop: where each set-up stopped, and their last pictures."""
            live = stopped_run("compare")
            if live is None:
                return gr.skip(), gr.skip()
            return views.compare.stopped_picture(live), live.stopped_status()

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
                            "network; returns the labelled picture (one row per set-up), the images, a table "
                            "(set-up, label, steps, NFE, when it finished inside the shared batch, distance) "
                            "and the results JSON.")
        # two listeners: the cancel goes out at once; the report waits for it to land (one listener with
        # both would send the cancel only after the report returned)
        cmp["stop"].click(None, None, None, cancels=[cmp_event], api_visibility="private")
        cmp["stop"].click(stop_compare, None, [cmp["preview"], cmp["status"]], api_name="stop_compare",
                          api_visibility="undocumented", concurrency_limit=None, show_progress="hidden")
        cmp["dice"].click(lambda: random.randint(0, 2**31 - 1), None, cmp["seed"], api_visibility="private",
                          queue=False)
    # fair queueing and the cost budget, checked before an event takes a place in the queue
    views.common.admit_fairly(demo, limits, {
        "generate": lambda v: lab.budget.check(lab.budget.generate_cost(lab.parse_generate(v, limits), limits), limits),
        "compare": lambda v: lab.budget.check(lab.budget.compare_cost(lab.parse_compare(v, limits), limits), limits)})
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
    # a change of exactly 0 (the last x0 against the result itself) has no logarithm: left out of the plot
    change, norm = trace_figures(rows, CHANGE_SERIES, NORM_SERIES)
    table = lab.tables.styled(pd.DataFrame([[r[c] for c in TRACE_COLUMNS] for r in rows], columns=list(TRACE_COLUMNS)))
    return note, strip, change, norm, table


def _info_or_none(model_name, limits):
    try:
        return lab.load_model(lab.check_model(model_name), limits)[1]
    except (ValueError, FileNotFoundError, OSError):
        return None


def _row_updates(info, method_name):
    """order / eta / spacing of one compare row: shown only when the sampler uses them, at its defaults."""
    opts = [lab.option_of(p) for p in views.compare.ROW_PARAMS]
    updates, _ = option_updates(info, method_name, opts)
    return updates


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
    app_limits = lab.Limits.from_env()
    # the cost budget's forward time, measured before anyone is served (an idle machine)
    lab.budget.forward_time(lab.prepare(lab.initial_model()[0], 1, lab.Conditioning(), app_limits))
    views.compare.warm_arrival(lab.initial_model()[0], app_limits)   # the first visitor finds it ready
    launch(build_app(app_limits))
