"""Raw control values (from the browser or a ``gradio_client`` call, unconverted) -> a request, or
ValueError naming the parameter, the value and what is allowed. Nothing is loaded before this passes."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

import samplers

from lab.catalog import check_model
from lab.limits import Limits
from lab.options import check_option, generate_params, method, param_name, public_options, request_options
from lab.values import check_bool, check_float, check_int, check_known_params, short

MAX_SEED = 2**63 - 1


@dataclass
class Conditioning:
    class_label: str | int | None = None     # None: the model's default; "none": unconditional
    guidance_scale: float | None = None
    guidance_rescale: float | None = None
    rescale_betas_zero_snr: bool = False


@dataclass
class SetupSpec:
    """One sampler set-up: method, steps and the options the request set (None ones left out)."""
    sampler: str
    steps: int | None              # None: the caller picks the step counts (Error vs steps)
    options: dict = field(default_factory=dict)

    def label(self) -> str:
        shown = {k: v for k, v in public_options(self.options).items()
                 if k in ("order", "eta", "spacing", "algorithm_type", "solver_type")}
        extra = "".join(f", {k}={v}" for k, v in shown.items())
        steps = "" if self.steps is None else f"{self.steps} steps"
        return f"{self.sampler} ({steps}{extra})".replace("(, ", "(").replace(" ()", "")


@dataclass
class GenerateRequest:
    model: str
    setup: SetupSpec
    seed: int
    num_images: int
    cond: Conditioning


@dataclass
class CompareRequest:
    model: str
    setups: list[SetupSpec]
    seed: int
    num_images: int
    cond: Conditioning
    reference: bool


def _check_steps(value, limits: Limits, name: str = "steps") -> int:
    return check_int(name, value, 1, limits.max_steps, hint=" on this machine; MAX_STEPS")


def check_setup(values: dict, limits: Limits, where: str = "", with_steps: bool = True) -> SetupSpec:
    """sampler + steps + options from a dict keyed by request parameter names (``with_steps=False``:
    a set-up whose step counts the caller chooses; its ``steps`` is None)."""
    sampler = values.get("sampler")
    if sampler is None or sampler == "":
        sampler = "ddim"
    try:
        m = method(sampler)
        spacing = values.get("spacing")
        if isinstance(spacing, str) and spacing and spacing not in samplers.SPACINGS:   # a scheduler name
            values = dict(values, **samplers.resolve_schedule(spacing))
        steps = values.get("steps")
        if not with_steps:
            steps = None
        else:
            steps = 20 if steps is None or steps == "" else _check_steps(steps, limits)
        options = {}
        for option in request_options():
            p = param_name(option.name)
            value = check_option(option, values.get(p), p)
            if value is not None and option.name in m.options:
                options[option.name] = value
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None
    return SetupSpec(sampler, steps, options)


def check_conditioning(values: dict) -> Conditioning:
    label = values.get("class_label")
    if isinstance(label, bool):
        raise ValueError(f"class_label={short(label)} must be a class name, a class index or 'none'")
    if isinstance(label, (float, np.floating)):
        if not math.isfinite(label) or label != int(label):
            raise ValueError(f"class_label={short(label)} must be a class name, a class index or 'none'")
        label = int(label)
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():   # "2" from a form field
        label = int(label.strip())
    if label == "" or label is None:
        label = None
    elif not isinstance(label, (str, int, np.integer)):
        raise ValueError(f"class_label={short(label)} must be a class name, a class index or 'none'")
    scale = values.get("guidance_scale")
    scale = None if scale in (None, "") else check_float("guidance_scale", scale, 0.0, 20.0)
    rescale = values.get("guidance_rescale")
    rescale = None if rescale in (None, "") else check_float("guidance_rescale", rescale, 0.0, 1.0)
    zero_snr = values.get("rescale_betas_zero_snr")
    zero_snr = False if zero_snr in (None, "") else check_bool("rescale_betas_zero_snr", zero_snr)
    return Conditioning(label, scale, rescale, zero_snr)


def check_count(values: dict, limits: Limits) -> int:
    n = values.get("num_images")
    if n is None or n == "":
        return 1
    # 2-D models take up to max_points samples; checked again against the model once it is known
    return check_int("num_images", n, 1, max(limits.max_images, limits.max_points),
                     hint=f"; images ≤ MAX_IMAGES={limits.max_images}, 2-D points ≤ MAX_POINTS")


def check_seed(value) -> int:
    if value is None or value == "":
        return 0
    return check_int("seed", value, 0, MAX_SEED)


def parse_generate(values: dict, limits: Limits, environ=None) -> GenerateRequest:
    """Raw /generate values (keyed by parameter name; None = default) -> a request, or ValueError."""
    check_known_params(values, generate_params())
    model = check_model(values.get("model"), environ)
    setup = check_setup(values, limits)
    return GenerateRequest(model, setup, check_seed(values.get("seed")), check_count(values, limits),
                           check_conditioning(values))


COMPARE_PARAMS = ("model", "setups", "seed", "num_images", "class_label", "guidance_scale", "guidance_rescale",
                  "rescale_betas_zero_snr", "reference")


def parse_compare(values: dict, limits: Limits, environ=None) -> CompareRequest:
    check_known_params(values, COMPARE_PARAMS)
    model = check_model(values.get("model"), environ)
    raw = values.get("setups")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError(f"setups={raw[:80]!r} is not JSON; allowed: a list of 1 to {limits.max_compare} "
                             f"objects like {{\"sampler\": \"ddim\", \"steps\": 20}}") from None
    if isinstance(raw, dict) and "setups" in raw:
        raw = raw["setups"]
    if not isinstance(raw, (list, tuple)) or not 1 <= len(raw) <= limits.max_compare:
        count = len(raw) if isinstance(raw, (list, tuple)) else type(raw).__name__
        raise ValueError(f"setups has {count} entries; allowed: a list of 1 to {limits.max_compare} (MAX_COMPARE) "
                         f"objects like {{\"sampler\": \"ddim\", \"steps\": 20}}")
    known = ("sampler", "steps") + tuple(param_name(o.name) for o in request_options())
    setups = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"setups[{i}]={short(entry)} must be an object like "
                             f"{{\"sampler\": \"ddim\", \"steps\": 20}}")
        try:
            check_known_params(entry, known)
        except ValueError as exc:
            raise ValueError(f"setups[{i}]: {exc}") from None
        setups.append(check_setup(entry, limits, where=f"setups[{i}]: "))
    reference = values.get("reference")
    reference = False if reference in (None, "") else check_bool("reference", reference)
    return CompareRequest(model, setups, check_seed(values.get("seed")), check_count(values, limits),
                          check_conditioning(values), reference)
