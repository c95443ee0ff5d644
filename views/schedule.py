"""Schedule: where each set-up evaluates the model on the noise axis (lab.analysis.schedule_table)."""
from __future__ import annotations

import math

import gradio as gr

import lab

from views.common import errors_as_gradio, named, setup_slots, slot_params, slot_samplers

SLOTS = 4
DEFAULTS = (("ddim", 10, "leading"), ("ddim", 10, "trailing"), ("heun", 10, "karras"), ("dpm-solver-fast", 10, None))
COLUMNS = ("label", "method", "index", "t", "sigma", "lambda", "step", "on_grid")
Y_AXES = ("log10 sigma", "lambda")   # lambda = -log sigma: half the log-SNR, the axis DPM-Solver steps in
PARAMS = ["model", "rescale_betas_zero_snr"] + slot_params(SLOTS) + ["y_axis"]


def rows(values: dict, limits: lab.Limits) -> list[dict]:
    """The evaluation points of every filled set-up slot on the chosen model's noise schedule."""
    info = lab.load_model(lab.check_model(values.get("model")), limits)[1]
    return lab.analysis.schedule_table(slot_samplers(values, SLOTS, info, limits))


def tab(ctx):
    limits = ctx["limits"]
    gr.Markdown("Where each set-up evaluates the model: the noise level (log10 sigma) of every model evaluation, "
                "in order. Heun and Runge-Kutta style samplers evaluate between grid points too.",
                elem_classes="hint")
    slots = setup_slots(DEFAULTS[:SLOTS], limits)
    with gr.Row():
        y_axis = gr.Radio(list(Y_AXES), value=Y_AXES[0], label="y_axis", scale=3,
                          info="lambda = -log sigma (half the log-SNR): evenly spaced for a uniform-logSNR grid")
        show = gr.Button("Show", variant="primary", elem_id="schedule-button", scale=1)
    plot = gr.ScatterPlot(x="index", y="value", color="label", label="noise level of each model evaluation "
                       "(one marker each)", x_title="evaluation", y_title="log10 sigma",
                       elem_id="schedule-plot")
    table = gr.Dataframe(headers=list(COLUMNS), interactive=False, label="evaluation points")

    def schedule(*values):
        import pandas as pd   # comes with gradio

        given = dict(zip(PARAMS, values))
        try:
            axis = given.get("y_axis") or Y_AXES[0]
            if axis not in Y_AXES:
                raise ValueError(f"y_axis={lab.short(axis)} is not allowed; allowed: {', '.join(Y_AXES)}")
            found = rows(given, limits)
        except (ValueError, FileNotFoundError) as exc:
            raise errors_as_gradio(exc, "schedule") from None
        frame = pd.DataFrame([[r[c] for c in COLUMNS] for r in found], columns=list(COLUMNS))
        # sigma 0 (the end) and inf (zero terminal SNR) have no finite logarithm: left out of the plot only
        shown = frame[frame["sigma"].map(lambda s: s is not None and 0 < s < float("inf"))].copy()
        shown["value"] = [math.log10(s) if axis == Y_AXES[0] else -math.log(s) for s in shown["sigma"]]
        return gr.ScatterPlot(value=shown, y_title=axis), frame

    show.click(named(schedule, PARAMS), [ctx["model"], ctx["rescale_betas_zero_snr"], *slots, y_axis],
               [plot, table], api_name="schedule", concurrency_id=ctx["concurrency_id"],
               concurrency_limit=ctx["concurrency_limit"], preprocess=False,
               api_description="Where up to 4 set-ups (sampler_i, steps_i, spacing_i) evaluate the model: "
                               "one row per evaluation with index, t, sigma, lambda, step, on_grid.")
