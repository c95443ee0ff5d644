"""Pieces every view shares: set-up slots (sampler, steps, spacing), API naming, error display."""
from __future__ import annotations

# ZeroGPU wants `spaces` imported before torch; elsewhere the package is absent and nothing changes.
try:
    import spaces  # noqa: F401
except ImportError:
    spaces = None

import inspect

import gradio as gr

import runner
import samplers

SLOT_FIELDS = ("sampler", "steps", "spacing")


def gpu(duration_of):
    """spaces.GPU(duration=...) on ZeroGPU; the function itself everywhere else."""
    if spaces is None or not hasattr(spaces, "GPU"):
        return lambda fn: fn
    return spaces.GPU(duration=duration_of)


def named(fn, names):
    """Give a ``*values`` handler a signature with one named parameter per input (the API's keyword names)."""
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names])
    return fn


def errors_as_gradio(exc: Exception):
    # ValueError / FileNotFoundError carry "what is wrong and what is allowed" already
    return gr.Error(str(exc), title="Invalid request" if isinstance(exc, ValueError) else "Not found")


def sampler_choices():
    return [(f"{d['title']}  [{d['name']}]", d["name"]) for d in samplers.describe()]


def slot_params(count: int) -> list[str]:
    """API names of ``count`` set-up slots: sampler_1, steps_1, spacing_1, sampler_2, ..."""
    return [f"{field}_{i + 1}" for i in range(count) for field in SLOT_FIELDS]


def setup_slots(defaults, limits: runner.Limits) -> list:
    """One row of (sampler, steps, spacing) controls per default; "(none)" leaves a slot out."""
    controls = []
    for i, (name, steps, spacing) in enumerate(defaults):
        with gr.Row():
            controls.append(gr.Dropdown(choices=[("(none)", "")] + sampler_choices(), value=name,
                                        label=f"{i + 1}: sampler", scale=3))
            controls.append(gr.Number(value=steps, precision=0, minimum=1, maximum=limits.max_steps, label="steps",
                                      scale=1))
            controls.append(gr.Dropdown(choices=[("sampler default", "")]
                                        + list(runner.option_choices(samplers.OPTIONS["spacing"])),
                                        value=spacing or "", label="spacing", scale=2))
    return controls


def conditioning(values: dict) -> runner.Conditioning:
    zero_snr = values.get("rescale_betas_zero_snr")
    return runner.Conditioning(rescale_betas_zero_snr=runner.check_bool("rescale_betas_zero_snr", zero_snr)
                               if zero_snr not in (None, "") else False)


def slot_setups(values: dict, count: int, limits: runner.Limits) -> list[tuple[int, runner.SetupSpec]]:
    """The filled slots as (slot number, checked SetupSpec); at least one must be filled."""
    setups = []
    for i in range(count):
        fields = {f: values.get(f"{f}_{i + 1}") for f in SLOT_FIELDS}
        if fields["sampler"] in (None, ""):   # an empty slot is simply not shown
            continue
        # "" is the dropdowns' "sampler default"; a str option would otherwise refuse it as a value
        fields = {k: v for k, v in fields.items() if v not in (None, "")}
        setups.append((i + 1, runner.check_setup(fields, limits, where=f"set-up {i + 1}: ")))
    if not setups:
        raise ValueError(f"sampler_1..sampler_{count} are all empty; allowed: at least one sampler name, e.g. 'ddim'")
    return setups


def slot_samplers(values: dict, count: int, info: runner.ModelInfo, limits: runner.Limits):
    """The filled slots as (label, samplers.Sampler) on the model's noise schedule."""
    cond = conditioning(values)
    return [(f"{i}: {spec.label()}", runner.build_sampler(info, spec, cond, limits, where=f"set-up {i}: "))
            for i, spec in slot_setups(values, count, limits)]
