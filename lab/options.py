"""Sampler options as request parameters: which options a request may set, their names and choices.

``PARAM_OF_OPTION`` is the one place where a request parameter's name differs from the kernel
option's; everything that converts between the two goes through ``param_name`` / ``option_name``.
"""
from __future__ import annotations

import math

import numpy as np

import samplers
from lab.values import short


# Options a request never sets: the model decides its prediction type.
MODEL_OWNED_OPTIONS = ("prediction_type",)
CLIPPING_OPTIONS = ("clip_sample", "thresholding")   # bend x0 into range: not the probability-flow ODE any more
# Request parameter names that differ from the kernel's option names: none today (the kernel's
# option is `order`, diffusers' `solver_order` is renamed at the diffusers-config boundary). Kept as
# the one place a future rename would go; every conversion below reads it.
PARAM_OF_OPTION: dict[str, str] = {}
_OPTION_OF_PARAM = {v: k for k, v in PARAM_OF_OPTION.items()}
BASE_PARAMS = ("model", "sampler", "steps", "seed", "num_images", "class_label", "guidance_scale",
               "guidance_rescale", "rescale_betas_zero_snr")
# Options shown up front in the UI (request parameter names); every other option goes under "more options".
MAIN_PARAMS = ("spacing", "eta", "order", "algorithm_type", "solver_type", "variance_type", "thresholding",
               "clip_sample", "final_sigmas_type", "set_alpha_to_one", "lower_order_final", "euler_at_final")


def request_options() -> list[samplers.Option]:
    """Every registry option a request may set, in a stable order (main ones first)."""
    opts = [o for name, o in samplers.OPTIONS.items() if name not in MODEL_OWNED_OPTIONS]
    order = {name: i for i, name in enumerate(MAIN_PARAMS)}
    return sorted(opts, key=lambda o: (order.get(param_name(o.name), len(order)), list(samplers.OPTIONS).index(o.name)))


def is_main(option: samplers.Option) -> bool:
    return param_name(option.name) in MAIN_PARAMS


def option_name(param: str) -> str:
    """The kernel's option name of a request parameter (``order`` -> the kernel's name for it)."""
    return _OPTION_OF_PARAM.get(param, param)


def option_of(param: str) -> samplers.Option:
    return samplers.OPTIONS[option_name(param)]


def public_options(options: dict) -> dict:
    """A kernel options dict keyed by request parameter names, JSON-ready."""
    return {param_name(k): jsonable(v) for k, v in options.items()}


def kernel_options(values: dict) -> dict:
    """A dict keyed by request parameter names -> keyed by the kernel's option names."""
    return {option_name(k): v for k, v in values.items()}


def kernel_text(text: str) -> str:
    """A kernel error message with the request's parameter names (e.g. order for the kernel's name)."""
    for option, param in PARAM_OF_OPTION.items():
        text = text.replace(f"{option}=", f"{param}=")
    return text


def jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in v]
    return v


def param_name(option: str) -> str:
    name = PARAM_OF_OPTION.get(option, option)
    if name in BASE_PARAMS:
        raise RuntimeError(f"sampler option {option!r} clashes with the request parameter {name!r}")
    return name


def generate_params() -> list[str]:
    """The /generate parameter names, in order (the app's inputs follow it)."""
    return list(BASE_PARAMS) + [param_name(o.name) for o in request_options()]


def method(name) -> samplers.Method:
    """The registry method of a sampler name or a ComfyUI / A1111 alias (samplers.resolve)."""
    if not isinstance(name, str):
        raise ValueError(f"sampler={short(name)} is unknown; allowed: {', '.join(samplers.REGISTRY)}")
    return samplers.REGISTRY[samplers.resolve(name)[0]]


def method_applies(method_name: str) -> set[str]:
    return set(samplers.REGISTRY[method_name].options)


def option_choices(option: samplers.Option, method_name: str | None = None):
    """Allowed values of an option (narrowed for a method), or None for ranges and free values."""
    if method_name is not None:
        narrowed = samplers.REGISTRY[method_name].choices.get(option.name)
        if narrowed is not None:
            return tuple(narrowed)
    if option.choices is not None:
        return tuple(option.choices)
    if option.kind is bool:
        return (True, False)
    if option.kind is int and option.low is not None and option.high is not None and option.high - option.low <= 8:
        return tuple(range(int(option.low), int(option.high) + 1))
    return None


def _parse_list(name: str, value):
    if isinstance(value, str):
        text = value.strip().strip("[]")
        if not text:
            return None
        try:
            return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"{name}={short(value)} must be numbers separated by commas, "
                             f"e.g. '999, 700, 400, 100'") from None
    return value


def check_option(option: samplers.Option, value, param: str):
    """A request's value for an option (None = the sampler's own default), or ValueError."""
    if value is None or (isinstance(value, str) and value == "" and option.kind is not str):
        return None
    if option.kind is list:
        value = _parse_list(param, value)
        if value is None:
            return None
    if option.kind in (int, float) and not isinstance(value, (bool, np.bool_)) and (
            (isinstance(value, (float, np.floating)) and not math.isfinite(value))
            or (isinstance(value, (int, np.integer)) and abs(int(value)) > 2**53)):
        # said here: int(nan) or float(10**400) inside the option's own check fails naming nothing
        lo = "" if option.low is None else f"{option.low:g} <= "
        hi = "" if option.high is None else f" <= {option.high:g}"
        raise ValueError(f"{param}={short(value)} must be a finite number of sensible size "
                         f"(allowed: {lo}{param}{hi})")
    try:
        return option.check(value)
    except (ValueError, OverflowError) as exc:
        text = str(exc)
        if param != option.name:
            text = text.replace(f"{option.name}=", f"{param}=", 1).replace(f" {option.name} ", f" {param} ")
        if f"{param}=" not in text:
            text = f"{param}={short(value)}: {text}"
        if "allowed" not in text:
            choices = option_choices(option)
            text += f"; allowed: {', '.join(map(str, choices))}" if choices else ""
        raise ValueError(text) from None
