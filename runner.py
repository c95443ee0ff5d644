"""What the app does, without the page: limits, validation, models, streaming runs, comparisons.

The Gradio app (``app.py``) only draws controls and forwards their values here, so every rule
below is testable without a server:

- ``Limits.from_env()``: machine limits (MAX_STEPS, MAX_IMAGES, ...) with safe 2-vCPU defaults.
- ``parse_generate(values)`` / ``parse_compare(values)``: raw control values (from the browser or a
  ``gradio_client`` call, unconverted) -> a request, or ``ValueError`` naming the parameter, the
  value and what is allowed. Nothing is loaded or computed before this passes.
- ``generate(request)``: a generator of ``Progress`` records, one per model evaluation.
- ``compare(request)``: several sampler set-ups from the same noise; evaluations that fall in the
  same round go through the network as one batch (``samplers.run_together``).

Reproducing a run by hand (what the app does, and what ``reproduction_code`` prints)::

    model = models.load(name)
    sampler = samplers.from_diffusers_config(model.scheduler_config, steps, method=sampler_name, **options)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((num_images, *shape), generator=g)       # the same generator then drives
    x = sampler.sample(model_fn, noise, generator=g)            # the sampler's own noise draws
    png = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

with ``model_fn = samplers.guided(model, torch.tensor(class_label), guidance_scale, guidance_rescale)``
for class-conditional models (the null label, scale 1, for "none").
"""
from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

import models
import samplers
import samplers.analysis
from models import cache as model_cache
from models import embedded as embedded_models
from models import loading as model_loading

# ---------------------------------------------------------------------------------------------
# Limits


def _cuda() -> bool:
    return torch.cuda.is_available()


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this machine. Each field has an environment variable."""
    max_steps: int = 200          # MAX_STEPS: sampler steps per run / per set-up
    max_nfe: int = 400            # MAX_NFE: model evaluations per run / per set-up
    max_images: int = 8           # MAX_IMAGES: images per run (per set-up in a comparison)
    max_points: int = 2000        # MAX_POINTS: samples per run on the 2-D models
    max_compare: int = 6          # MAX_COMPARE: set-ups in one comparison
    max_resolution: int = 64      # MAX_RESOLUTION: largest image side (px) a model may have
    reference_steps: int = 200    # REFERENCE_STEPS: steps of the reference solve for distances
    queue_size: int = 16          # QUEUE_SIZE: waiting requests before new ones are turned away
    concurrency: int = 1          # MAX_CONCURRENCY: model runs at the same time
    preview_fps: float = 10.0     # PREVIEW_FPS: preview images per second at most

    ENV = {"max_steps": "MAX_STEPS", "max_nfe": "MAX_NFE", "max_images": "MAX_IMAGES",
           "max_points": "MAX_POINTS", "max_compare": "MAX_COMPARE", "max_resolution": "MAX_RESOLUTION",
           "reference_steps": "REFERENCE_STEPS", "queue_size": "QUEUE_SIZE", "concurrency": "MAX_CONCURRENCY",
           "preview_fps": "PREVIEW_FPS"}
    BOUNDS = {"max_steps": (1, 1000), "max_nfe": (1, 10000), "max_images": (1, 256), "max_points": (1, 100000),
              "max_compare": (1, 6), "max_resolution": (8, 1024), "reference_steps": (10, 1000),
              "queue_size": (1, 1000), "concurrency": (1, 64), "preview_fps": (0.1, 60.0)}

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        env = os.environ if environ is None else environ
        values = {}
        if _cuda():  # a GPU takes the 256 px hub models and a few runs at once
            values.update(max_resolution=256, concurrency=2)
        for f in fields(cls):   # ENV and BOUNDS have no annotation: class constants, not fields
            name = cls.ENV[f.name]
            raw = env.get(name)
            if raw is None or str(raw).strip() == "":
                continue
            kind = float if f.name == "preview_fps" else int
            lo, hi = cls.BOUNDS[f.name]
            try:
                value = kind(str(raw).strip())
            except ValueError:
                raise ValueError(f"environment {name}={raw!r} must be {'a number' if kind is float else 'an integer'} "
                                 f"(allowed: {lo:g} <= {name} <= {hi:g})") from None
            if not lo <= value <= hi:
                raise ValueError(f"environment {name}={raw!r} is out of range (allowed: {lo:g} <= {name} <= {hi:g})")
            values[f.name] = value
        return cls(**values)

    def describe(self) -> str:
        return (f"steps ≤ {self.max_steps} (NFE ≤ {self.max_nfe}), images ≤ {self.max_images} "
                f"(2-D points ≤ {self.max_points}), set-ups ≤ {self.max_compare}, "
                f"resolution ≤ {self.max_resolution} px, "
                f"{self.concurrency} run(s) at a time, queue ≤ {self.queue_size}")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------------------------
# Models the app offers

FALLBACK_MODEL = "ideal-emoji"
# Image side of the allow-listed hub models, so a too-large one is refused before downloading it.
HUB_RESOLUTION = {"google/ddpm-cifar10-32": 32, "google/ddpm-celebahq-256": 256, "google/ddpm-church-256": 256,
                  "google/ddpm-bedroom-256": 256, "google/ddpm-cat-256": 256}
# Extra in-process models (name -> (description, factory)); the tests register a tiny network here.
EXTRA_MODELS: dict[str, tuple[str, Callable[[], Any]]] = {}


def register_model(name: str, factory: Callable[[], Any], description: str = "") -> None:
    """Offer ``factory()`` (a callable model with ``.scheduler_config``) under ``name``."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name={name!r} must be a non-empty string without '/'")
    EXTRA_MODELS[name] = (description or name, factory)
    cache_clear()


def allow_any_hub_model(environ=None) -> bool:
    env = os.environ if environ is None else environ
    return str(env.get("ALLOW_ANY_HUB_MODEL", "")).strip().upper() in {"1", "TRUE", "YES", "ON"}


def model_choices() -> list[str]:
    return list(embedded_models.EMBEDDED) + list(EXTRA_MODELS) + list(model_loading.ALLOWED_HUB_MODELS)


def model_description(name: str) -> str:
    if name in embedded_models.EMBEDDED:
        return embedded_models.EMBEDDED[name]
    if name in EXTRA_MODELS:
        return EXTRA_MODELS[name][0]
    return f"hub repo {name}"


def default_model_available() -> bool:
    folder = Path(embedded_models.DEFAULT_MODEL_DIR)
    return (folder / "config.json").is_file() and (folder / model_loading.WEIGHTS_NAME).is_file()


def initial_model() -> tuple[str, str]:
    """(model the page starts with, notice): the embedded default, or the fallback while it is missing."""
    if default_model_available():
        return "default", ""
    return FALLBACK_MODEL, _fallback_notice()


def _fallback_notice() -> str:
    return (f"The embedded default model ({embedded_models.DEFAULT_MODEL_DIR}) is not there yet (the training "
            f"script writes it); using '{FALLBACK_MODEL}' ({embedded_models.EMBEDDED[FALLBACK_MODEL]}) instead.")


def check_model(value, environ=None) -> str:
    """A model id from a request, or ValueError. Paths and URLs are never accepted from a request."""
    allowed = model_choices()
    any_hub = allow_any_hub_model(environ)
    allowed_text = ", ".join(allowed) + (" or any hub id 'org/name'" if any_hub else
                                         " (other hub ids 'org/name' need ALLOW_ANY_HUB_MODEL=1)")
    if value is None or value == "":
        return "default"
    if not isinstance(value, str):
        raise ValueError(f"model={short(value)} must be a string; allowed: {allowed_text}")
    if value in allowed:
        return value
    if "://" in value or value.startswith(("/", ".", "~", "\\")) or "\\" in value or ".." in value:
        raise ValueError(f"model={short(value)} is a path or URL; allowed: only named models: {allowed_text}")
    if not model_loading.REPO_ID_PATTERN.match(value) or len(value) > model_loading.MAX_REPO_ID_LENGTH:
        raise ValueError(f"model={short(value)} is not a known model or a hub id 'org/name'; allowed: {allowed_text}")
    if not any_hub:
        raise ValueError(f"model={short(value)} is not in the allow-list; allowed: {allowed_text}")
    return value


@dataclass
class ModelInfo:
    name: str                      # what was asked for
    loaded: str                    # what runs (differs from name when the default falls back)
    notice: str
    kind: str                      # "image" or "points" (2-D analytic models)
    event_shape: tuple
    scheduler_config: dict
    prediction_type: str
    classes: list[str] | None      # names of the selectable classes (None: unconditional model)
    null_label: int | None         # the unconditional label of a classifier-free-guidance network
    default_class: str             # "none" or a class name
    default_guidance: float
    device: torch.device
    version: float = 0.0
    exact_flow: bool = False       # GaussianData: the probability-flow map is known in closed form

    @property
    def guidance(self) -> bool:
        return self.null_label is not None

    @property
    def resolution(self) -> int:
        return int(max(self.event_shape[1:])) if self.kind == "image" else 0

    def public(self) -> dict:
        return dict(name=self.name, loaded=self.loaded, notice=self.notice, kind=self.kind,
                    event_shape=list(self.event_shape), prediction_type=self.prediction_type, classes=self.classes,
                    guidance=self.guidance, default_class=self.default_class,
                    default_guidance=self.default_guidance)


_model_cache: OrderedDict = OrderedDict()
_model_lock = threading.Lock()


def cache_clear() -> None:
    with _model_lock:
        _model_cache.clear()
    with _reference_lock:
        _reference_cache.clear()


def _default_version() -> float:
    try:
        return (Path(embedded_models.DEFAULT_MODEL_DIR) / model_loading.WEIGHTS_NAME).stat().st_mtime
    except OSError:
        return 0.0


def emoji_categories() -> list[str] | None:
    try:
        with np.load(embedded_models.EMOJI_IMAGES, allow_pickle=False) as data:
            return [str(c) for c in data["categories"]] if "categories" in data.files else None
    except (OSError, ValueError, KeyError):
        return None


def _describe_model(name: str, loaded: str, net, notice: str, version: float) -> ModelInfo:
    config = dict(getattr(net, "config", None) or {})
    scheduler_config = dict(getattr(net, "scheduler_config", None) or model_loading.DEFAULT_SCHEDULER_CONFIG)
    shape = getattr(net, "event_shape", None)
    if shape is None:
        size = config.get("sample_size") or 32
        size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        shape = (int(config.get("in_channels", 3)), *size)
    shape = tuple(int(s) for s in shape)
    kind = "image" if len(shape) == 3 else "points"
    if kind == "points" and shape != (2,):
        raise ValueError(f"model {name!r} has samples of shape {list(shape)}; the app shows images [C, H, W] "
                         f"or 2-D points")
    # guidance off by default, also for a guidance-trained network (the conditional network alone): the
    # default emoji network's null label (10% of its training batches) is weak, and scales above ~1.25
    # over-saturate its pictures
    classes, null_label, default_class, default_guidance = None, None, "none", 1.0
    n_embeds = config.get("num_class_embeds")
    if isinstance(net, models.IdealDenoiser) and net.labels is not None:
        # the exact conditional posterior: a class restricts the image set; no guidance needed
        classes = list(net.categories) if net.categories else [f"class {i}" for i in range(net.null_label)]
    elif n_embeds and not isinstance(net, models.IdealDenoiser):
        # networks trained for classifier-free guidance keep the last label for "no class"
        null_label = int(n_embeds) - 1
        names = emoji_categories() if loaded == "default" else None
        classes = names if names and len(names) == null_label else [f"class {i}" for i in range(null_label)]
        default_class = classes[0]
    try:
        device = next(net.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = torch.device("cpu")
    return ModelInfo(name=name, loaded=loaded, notice=notice, kind=kind, event_shape=shape,
                     scheduler_config=scheduler_config,
                     prediction_type=str(scheduler_config.get("prediction_type", "epsilon")),
                     classes=classes, null_label=null_label, default_class=default_class,
                     default_guidance=default_guidance, device=device, version=version,
                     exact_flow=isinstance(net, models.GaussianData))


def load_model(name: str, limits: Limits | None = None):
    """(model, ModelInfo) for a checked model id, loaded once and shared by every request.

    The last MODEL_CACHE_SIZE models (environment, default 2, as for ``models.get``) stay loaded.

    "default" falls back to FALLBACK_MODEL while assets/emoji-unet is missing, and is reloaded
    when the training script writes a newer export.
    """
    notice = ""
    loaded = name
    version = 0.0
    if name == "default":
        if default_model_available():
            version = _default_version()
        else:
            loaded, notice = FALLBACK_MODEL, _fallback_notice()
    if limits is not None and loaded in HUB_RESOLUTION and HUB_RESOLUTION[loaded] > limits.max_resolution:
        raise ValueError(f"model={name!r} makes {HUB_RESOLUTION[loaded]} px images; this machine allows at most "
                         f"MAX_RESOLUTION={limits.max_resolution} px")
    key = (loaded, version)
    with _model_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
            net, info = _model_cache[key]
            while len(_model_cache) > model_cache.cache_size():   # the size may have been lowered since
                _model_cache.popitem(last=False)
            return net, _with_notice(info, name, notice)
        if loaded in EXTRA_MODELS:
            net = EXTRA_MODELS[loaded][1]()
        else:
            try:
                net = models.load(loaded)
            except FileNotFoundError as exc:
                if loaded == "default":  # the export folder was being replaced: one retry
                    time.sleep(0.5)
                    net = models.load(loaded)
                else:
                    raise FileNotFoundError(f"model={loaded!r} could not be loaded: {exc}") from None
        info = _describe_model(loaded, loaded, net, "", version)
        size = model_cache.cache_size()
        if size > 0:
            _model_cache[key] = (net, info)
        while len(_model_cache) > size:
            _model_cache.popitem(last=False)
    if limits is not None and info.kind == "image" and info.resolution > limits.max_resolution:
        raise ValueError(f"model={name!r} makes {info.resolution} px images; this machine allows at most "
                         f"MAX_RESOLUTION={limits.max_resolution} px")
    return net, _with_notice(info, name, notice)


def _with_notice(info: ModelInfo, name: str, notice: str) -> ModelInfo:
    copy = ModelInfo(**{f.name: getattr(info, f.name) for f in fields(ModelInfo)})
    copy.name, copy.notice = name, notice
    return copy


# ---------------------------------------------------------------------------------------------
# Sampler options as request parameters

# Options a request never sets: the model decides its prediction type.
MODEL_OWNED_OPTIONS = ("prediction_type",)
CLIPPING_OPTIONS = ("clip_sample", "thresholding")   # bend x0 into range: not the probability-flow ODE any more
# Request parameter names that differ from the option names: none (the kernel's names are the API's).
PARAM_OF_OPTION: dict[str, str] = {}
OPTION_OF_PARAM = {v: k for k, v in PARAM_OF_OPTION.items()}
BASE_PARAMS = ("model", "sampler", "steps", "seed", "num_images", "class_label", "guidance_scale",
               "guidance_rescale", "rescale_betas_zero_snr")
# Options shown up front in the UI; every other option goes under "more options".
MAIN_OPTIONS = ("spacing", "eta", "order", "algorithm_type", "solver_type", "variance_type", "thresholding",
                "clip_sample", "final_sigmas_type", "set_alpha_to_one", "lower_order_final", "euler_at_final")
MAX_SEED = 2**63 - 1


def request_options() -> list[samplers.Option]:
    """Every registry option a request may set, in a stable order (main ones first)."""
    opts = [o for name, o in samplers.OPTIONS.items() if name not in MODEL_OWNED_OPTIONS]
    order = {name: i for i, name in enumerate(MAIN_OPTIONS)}
    return sorted(opts, key=lambda o: (order.get(o.name, len(order)), list(samplers.OPTIONS).index(o.name)))


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


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_number(value):
    """int / float from a number or a numeric string; None when it is neither."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def check_int(name: str, value, low: int, high: int, *, hint: str = "") -> int:
    allowed = f"(allowed: {low} <= {name} <= {high}{hint})"
    number = _as_number(value)
    if number is None or (isinstance(number, float) and (not math.isfinite(number) or number != int(number))):
        raise ValueError(f"{name}={short(value)} must be an integer {allowed}")
    number = int(number)   # exact for any size: no detour through float
    if not low <= number <= high:
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    return number


def check_float(name: str, value, low: float, high: float) -> float:
    allowed = f"(allowed: {low:g} <= {name} <= {high:g})"
    number = _as_number(value)
    if number is None:
        raise ValueError(f"{name}={short(value)} must be a number {allowed}")
    if isinstance(number, int) and not low <= number <= high:   # huge ints overflow float()
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    number = float(number)
    if not math.isfinite(number):
        raise ValueError(f"{name}={short(value)} must be a finite number {allowed}")
    if not low <= number <= high:
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    return number


def check_bool(name: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name}={short(value)} must be true or false")


# ---------------------------------------------------------------------------------------------
# Requests

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
    steps: int
    options: dict = field(default_factory=dict)

    def label(self) -> str:
        shown = {PARAM_OF_OPTION.get(k, k): v for k, v in self.options.items()
                 if k in ("order", "eta", "spacing", "algorithm_type", "solver_type")}
        extra = "".join(f", {k}={v}" for k, v in shown.items())
        return f"{self.sampler} ({self.steps} steps{extra})"


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


def check_setup(values: dict, limits: Limits, where: str = "") -> SetupSpec:
    """sampler + steps + options from a dict keyed by request parameter names."""
    sampler = values.get("sampler")
    if sampler is None or sampler == "":
        sampler = "ddim"
    try:
        m = method(sampler)
        spacing = values.get("spacing")
        if isinstance(spacing, str) and spacing and spacing not in samplers.SPACINGS:   # a scheduler name
            values = dict(values, **samplers.resolve_schedule(spacing))
        steps = values.get("steps")
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


def check_known_params(values: dict, known) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(known)}")


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
        import json

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


# ---------------------------------------------------------------------------------------------
# Preparing a run: model, sampler, conditioning, noise


def scheduler_config(info: ModelInfo, cond: Conditioning) -> dict:
    cfg = dict(info.scheduler_config)
    if cond.rescale_betas_zero_snr:
        cfg["rescale_betas_zero_snr"] = True
    return cfg


def build_sampler(info: ModelInfo, setup: SetupSpec, cond: Conditioning, limits: Limits,
                  where: str = "") -> samplers.Sampler:
    try:
        sampler = samplers.from_diffusers_config(scheduler_config(info, cond), setup.steps, method=setup.sampler,
                                                 **setup.options)
    except ValueError as exc:
        text = str(exc)
        for option, param in PARAM_OF_OPTION.items():   # the request's names, e.g. order for solver_order
            text = text.replace(f"{option}=", f"{param}=")
        raise ValueError(f"{where}{text}") from None
    if sampler.nfe > limits.max_nfe:
        raise ValueError(f"{where}sampler={setup.sampler!r} with steps={setup.steps} needs {sampler.nfe} model "
                         f"evaluations; allowed: at most MAX_NFE={limits.max_nfe} on this machine")
    return sampler


def default_options(info: ModelInfo, method_name: str, cond: Conditioning | None = None) -> dict:
    """The option values a run of ``method_name`` on this model uses when the request sets none."""
    sampler = samplers.from_diffusers_config(scheduler_config(info, cond or Conditioning()), 10, method=method_name)
    return dict(sampler.options)


@dataclass
class Resolved:
    """The class and guidance a run uses, after the model's defaults are filled in."""
    class_label: str                 # a class name or "none"
    class_index: int | None
    guidance_scale: float
    guidance_rescale: float


def resolve_conditioning(info: ModelInfo, cond: Conditioning) -> Resolved:
    label = info.default_class if cond.class_label is None else cond.class_label
    if info.classes is None:
        if label not in ("none", -1, None):
            raise ValueError(f"class_label={short(cond.class_label)}: model {info.name!r} is unconditional; "
                             f"allowed: none")
        index = None
        label = "none"
    elif isinstance(label, str) and label.strip().lower() == "none":
        index, label = None, "none"
    elif isinstance(label, str) and label in info.classes:
        index = info.classes.index(label)
    elif isinstance(label, (int, np.integer)) and not isinstance(label, bool) and (
            0 <= int(label) < len(info.classes) or int(label) == -1):
        index = None if int(label) == -1 else int(label)
        label = "none" if index is None else info.classes[index]
    else:
        raise ValueError(f"class_label={short(cond.class_label)} is not a class of model {info.name!r}; "
                         f"allowed: none, 0..{len(info.classes) - 1} or one of {info.classes}")
    scale = info.default_guidance if cond.guidance_scale is None else cond.guidance_scale
    rescale = 0.0 if cond.guidance_rescale is None else cond.guidance_rescale
    if not info.guidance or index is None:
        scale, rescale = 1.0, 0.0   # nothing to guide: an analytic model's classes are exact, or no class
    return Resolved(label, index, float(scale), float(rescale))


def model_function(net, info: ModelInfo, resolved: Resolved):
    """model(x, t) for the samplers: the network with its class and guidance, without autograd."""
    if info.guidance:
        label = info.null_label if resolved.class_index is None else resolved.class_index
        fn = samplers.guided(net, torch.tensor(label), resolved.guidance_scale, resolved.guidance_rescale,
                             null_label=info.null_label)
    elif info.classes is not None and resolved.class_index is not None:
        fn = samplers.guided(net, torch.tensor(resolved.class_index), 1.0, 0.0)
    else:
        fn = net

    def model(x, t):
        with torch.no_grad():   # thread-local and scoped to the call: safe when requests share threads
            return fn(x, t)

    model.config = getattr(net, "config", None)
    model.scheduler_config = getattr(net, "scheduler_config", None)
    return model


def make_noise(seed: int, count: int, shape: tuple, device=None) -> tuple[torch.Tensor, torch.Generator]:
    """The starting noise and the generator whose later draws the stochastic samplers use."""
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((count, *shape), generator=generator, dtype=torch.float32)
    return (noise if device is None else noise.to(device)), generator


def _check_against_model(info: ModelInfo, count: int, cond: Conditioning, limits: Limits) -> None:
    if info.kind == "image" and count > limits.max_images:
        raise ValueError(f"num_images={count} is out of range (allowed: 1 <= num_images <= {limits.max_images} "
                         f"images on this machine; MAX_IMAGES)")
    if info.kind == "points" and count > limits.max_points:
        raise ValueError(f"num_images={count} is out of range (allowed: 1 <= num_images <= {limits.max_points} "
                         f"points of a 2-D model; MAX_POINTS)")
    if cond.rescale_betas_zero_snr and info.prediction_type != "v_prediction":
        raise ValueError(f"rescale_betas_zero_snr=True needs a v_prediction model (at zero terminal SNR an "
                         f"{info.prediction_type} model cannot be inverted at the first step); model {info.name!r} "
                         f"predicts {info.prediction_type}; allowed: false")


# ---------------------------------------------------------------------------------------------
# Pictures: uint8 images, previews, 2-D scatter plots

PREVIEW_PANEL = 256   # previews are upscaled (nearest) until a panel is at least this wide


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (or [N, H, W] for one channel), as saved in the PNGs."""
    img = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    img = img.permute(0, 2, 3, 1).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[-1] == 3:
        return img
    return np.repeat(img[..., :1], 3, axis=2) if img.shape[-1] != 4 else img[..., :3]


def tile(images: np.ndarray, cols: int | None = None, gap: int = 1, fill: int = 255) -> np.ndarray:
    """uint8 [N, H, W(, 3)] -> one grid image [rows*H, cols*W, 3]."""
    n = images.shape[0]
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = images.shape[1:3]
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), fill, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = _rgb(images[i])
    return out


def upscale(img: np.ndarray, target: int = PREVIEW_PANEL) -> np.ndarray:
    factor = max(1, target // max(img.shape[:2]))
    return img if factor == 1 else img.repeat(factor, axis=0).repeat(factor, axis=1)


@functools.lru_cache(maxsize=4)
def font(size: int):
    """PIL's built-in font at ``size`` px, for labels drawn into pictures (no font files needed)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):   # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def labelled_strip(pictures, side: int = 64, gap: int = 4, font_size: int = 11) -> np.ndarray:
    """[(picture, line 1, line 2), ...] -> one row of pictures (nearest-upscaled to ``side``) with two
    lines of text under each: the x0 strip of a run's trace, the network-vs-training-set lines."""
    from PIL import Image, ImageDraw

    label_font = font(font_size)
    text_h = 2 * font_size + 6
    out = Image.new("RGB", (len(pictures) * (side + gap) - gap, side + text_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (picture, first, second) in enumerate(pictures):
        img = Image.fromarray(_rgb(np.asarray(picture, np.uint8)))
        img = img.resize((side, side), Image.NEAREST if img.width <= side else Image.BILINEAR)
        x = i * (side + gap)
        out.paste(img, (x, 0))
        draw.text((x + 1, side + 2), first, fill=(40, 40, 40), font=label_font)
        draw.text((x + 1, side + font_size + 4), second, fill=(110, 110, 110), font=label_font)
    return np.asarray(out)


SCATTER_EXTENT = 2.5   # the 2-D plots show [-2.5, 2.5]^2: the data lies within radius 1, noise mostly inside


def scatter(points: torch.Tensor | np.ndarray, size: int = PREVIEW_PANEL, color=(31, 119, 180)) -> np.ndarray:
    """A plain raster scatter plot of [N, 2] points (no plotting library needed)."""
    pts = np.asarray(points.detach().cpu().numpy() if torch.is_tensor(points) else points, np.float64).reshape(-1, 2)
    img = np.full((size, size, 3), 255, np.uint8)
    mid = size // 2
    img[mid, :] = img[:, mid] = 225
    scale = (size - 1) / (2 * SCATTER_EXTENT)
    keep = np.all(np.isfinite(pts), axis=1)
    cols = np.round((pts[keep, 0] + SCATTER_EXTENT) * scale).astype(int)
    rows = np.round((SCATTER_EXTENT - pts[keep, 1]) * scale).astype(int)
    for dr, dc in itertools.product((-1, 0, 1), repeat=2):
        r, c = rows + dr, cols + dc
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        img[r[ok], c[ok]] = color
    return img


def picture(x: torch.Tensor, info: ModelInfo, *, clean: bool, target: int = PREVIEW_PANEL) -> np.ndarray:
    """One panel: the image grid (upscaled) or the scatter plot of a batch."""
    if info.kind == "points":
        return scatter(x, target, (214, 39, 40) if clean else (31, 119, 180))
    return upscale(tile(to_uint8(x)), target)


def stack(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures one under another, left-aligned on white."""
    out = np.full((sum(p.shape[0] for p in pictures) + gap * (len(pictures) - 1), max(p.shape[1] for p in pictures), 3),
                  255, np.uint8)
    y = 0
    for p in pictures:
        out[y:y + p.shape[0], :p.shape[1]] = p
        y += p.shape[0] + gap
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[:left.shape[0], :left.shape[1]] = left
    out[:right.shape[0], left.shape[1] + gap:] = right
    return out


def preview(x: torch.Tensor, x0: torch.Tensor, info: ModelInfo, target: int = PREVIEW_PANEL) -> np.ndarray:
    """The noisy sample (left) and the predicted x0 (right)."""
    return side_by_side(picture(x, info, clean=False, target=target), picture(x0, info, clean=True, target=target))


def final_pictures(x: torch.Tensor, info: ModelInfo) -> list[np.ndarray]:
    """What the gallery shows and the PNGs hold: each image at its own resolution, or one scatter plot."""
    if info.kind == "points":
        return [scatter(x, 512, (214, 39, 40))]
    return list(to_uint8(x))


class PreviewFile:
    """The current preview as a JPEG file, rewritten only when a new preview is drawn.

    A streaming server re-sends every output with every update; handing it the same small file
    again is far cheaper than a new image to encode (or an "unchanged" marker, which Gradio 6
    answers by building a new component per update). One file per run, deleted at the end.
    """

    def __init__(self, quality: int = 90):
        import tempfile

        self.quality = quality
        self.folder = tempfile.mkdtemp(prefix="sampler-lab-preview-")
        self.path: str | None = None
        self.count = 0

    def update(self, image: np.ndarray | None) -> str | None:
        if image is not None:
            from PIL import Image

            self.count += 1
            path = os.path.join(self.folder, f"preview-{self.count}.jpg")
            Image.fromarray(image).save(path, format="JPEG", quality=self.quality)
            if self.path is not None:
                self._remove(self.path)
            self.path = path
        return self.path

    def png(self, image: np.ndarray, name: str) -> str:
        """``image`` as a PNG file next to the preview (fast compression: Gradio's own default costs ~5x
        longer, at the end of every run); removed with the preview at close()."""
        from PIL import Image

        path = os.path.join(self.folder, f"{name}.png")
        Image.fromarray(image).save(path, format="PNG", compress_level=1)
        return path

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        self.path = None


# ---------------------------------------------------------------------------------------------
# Run bookkeeping (what is running, how far it got; the tests read it to see a Stop take effect)

@dataclass
class RunRecord:
    id: int
    kind: str
    total_nfe: int
    nfe: int = 0
    status: str = "running"        # running, done, stopped, failed
    started: float = field(default_factory=time.time)
    finished: float | None = None


_run_ids = itertools.count(1)
_runs_lock = threading.Lock()
RUNS: deque = deque(maxlen=64)


def new_run(kind: str, total: int) -> RunRecord:
    record = RunRecord(next(_run_ids), kind, total)
    with _runs_lock:
        RUNS.append(record)
    return record


def active_runs() -> list[RunRecord]:
    with _runs_lock:
        return [r for r in RUNS if r.status == "running"]


class Tracked:
    """Marks a run record done / stopped / failed however its generator ends."""

    def __init__(self, record: RunRecord):
        self.record = record

    def __enter__(self):
        return self.record

    def __exit__(self, kind, exc, tb):
        self.record.finished = time.time()
        if kind is None:
            self.record.status = "done"
        elif issubclass(kind, GeneratorExit):
            self.record.status = "stopped"
        else:
            self.record.status = "failed"
        return False


# ---------------------------------------------------------------------------------------------
# The single run


@dataclass
class Progress:
    step: int                      # grid steps reached so far
    steps: int
    nfe: int                       # model evaluations so far
    total_nfe: int
    t: float
    sigma: float
    seconds: float
    done: bool
    preview: np.ndarray | None     # None when throttled away
    images: list[np.ndarray] | None = None   # final pictures (at the end)
    sample: torch.Tensor | None = None       # the final sample (at the end)
    info: dict | None = None                 # every setting, the seed, timing (at the end)
    trace: dict | None = None                # how the picture formed, step by step (at the end): see Tracer

    def status(self) -> str:
        return (f"step {self.step}/{self.steps} · NFE {self.nfe}/{self.total_nfe} · t = {self.t:.1f} · "
                f"sigma = {self.sigma:.4g} · {self.seconds:.2f} s")


def step_of(grid_t: np.ndarray, t: float) -> int:
    """Grid steps whose start lies at or above model time t (grids descend): 'step i of N'."""
    return int(np.count_nonzero(grid_t >= t - 1e-9))


class Throttle:
    """Decides when a preview is worth sending: at most ``per_second`` a second, and no more often
    than keeps previews (drawing them plus what the consumer does with one: JPEG, file, network) to
    ``budget`` of the run's time. The cost is measured, so a slow or busy machine gets fewer previews
    instead of a slower run."""

    def __init__(self, per_second: float, clock=time.perf_counter, budget: float = 0.05):
        self.gap = 1.0 / per_second
        self.clock = clock
        self.budget = budget
        self.cost = 0.0
        self.last = -math.inf

    def ready(self, force: bool = False) -> bool:
        now = self.clock()
        if force or now - self.last >= max(self.gap, self.cost / self.budget):
            self.last = now
            return True
        return False

    def spent(self, seconds: float) -> None:
        """Report what the last preview cost (an average, so one slow frame does not stall previews)."""
        self.cost = seconds if self.cost == 0.0 else 0.5 * (self.cost + seconds)


TRACE_SIDE = 64          # the trace keeps image #0 at most this wide (area average): small at any resolution
TRACE_THUMBNAILS = 16    # x0 thumbnails per run, about (plus the last)
COMMIT_FRACTION = 0.1    # "committed": every later x0 within 10% of the final image


class Tracer:
    """Keeps a small copy of every step of a run for ``samplers.analysis.trace``.

    Images: image #0 only, shrunk to TRACE_SIDE px (exact for the 32 px default model), so a long
    run on a large model stays a few MB. 2-D models: the whole point set. Copying costs a few
    microseconds a step; the numbers and thumbnails are computed once, at the end.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.kept: list[samplers.Step] = []
        self.shrunk = False

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "points":
            return x.detach().to("cpu", torch.float32, copy=True)
        first = x[:1].detach().float()
        if max(first.shape[-2:]) > TRACE_SIDE:
            first = torch.nn.functional.adaptive_avg_pool2d(first, TRACE_SIDE)
            self.shrunk = True
        return first.to("cpu", copy=True)

    def add(self, step: samplers.Step) -> None:
        self.kept.append(replace(step, x=self._small(step.x), x0=self._small(step.x0)))

    def result(self) -> dict:
        """rows (samplers.analysis.trace), thumbnails [(nfe, sigma, picture)], commit_nfe, about."""
        every = max(1, math.ceil(len(self.kept) / TRACE_THUMBNAILS))
        found = samplers.analysis.trace(self.kept, thumbnails_every=every)
        sigma_at = {r["nfe"]: r["sigma"] for r in found["rows"]}
        pictures = []
        for nfe, thumb in found["thumbnails"]:
            picture = scatter(thumb, size=128) if self.kind == "points" else _rgb(thumb)
            pictures.append((nfe, sigma_at[nfe], picture))
        about = ("the whole point set" if self.kind == "points" else
                 f"image #0{f' at {TRACE_SIDE} px' if self.shrunk else ''}")
        return dict(rows=found["rows"], thumbnails=pictures,
                    commit_nfe=samplers.analysis.commit_index(found["rows"], COMMIT_FRACTION), about=about)


def _settings(req_model: str, info: ModelInfo, setup: SetupSpec, sampler: samplers.Sampler, seed: int, count: int,
              resolved: Resolved, cond: Conditioning) -> dict:
    return {
        "model": req_model, "model_loaded": info.loaded, "sampler": sampler.name, "steps": sampler.steps,
        "seed": seed, "num_images": count, "class_label": resolved.class_label,
        "guidance_scale": resolved.guidance_scale, "guidance_rescale": resolved.guidance_rescale,
        "rescale_betas_zero_snr": cond.rescale_betas_zero_snr,
        "options": {PARAM_OF_OPTION.get(k, k): _jsonable(v) for k, v in sampler.options.items()},
        "nfe": sampler.nfe, "timesteps": [round(float(t), 4) for t in sampler.timesteps],
    }


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    return v


def reproduction_code(settings: dict, shape: tuple) -> str:
    """Python that recomputes the run with the samplers package alone."""
    # only what differs from the sampler's defaults on this model: the rest is what from_diffusers_config picks
    opts = {OPTION_OF_PARAM.get(k, k): v for k, v in settings.get("set_options", settings["options"]).items()
            if k != "prediction_type"}
    opt_text = "".join(f", {k}={v!r}" for k, v in opts.items())
    model = settings["model_loaded"]
    lines = ["import torch, models, samplers",
             f"model = models.load({model!r})"]
    cfg = "model.scheduler_config"
    if settings["rescale_betas_zero_snr"]:
        cfg = "{**model.scheduler_config, 'rescale_betas_zero_snr': True}"
    lines.append(f"sampler = samplers.from_diffusers_config({cfg}, {settings['steps']}, "
                 f"method={settings['sampler']!r}{opt_text})")
    if settings.get("class_index") is not None or settings.get("null_label") is not None:
        label = settings["class_index"] if settings.get("class_index") is not None else settings["null_label"]
        extra = f", null_label={settings['null_label']}" if settings.get("null_label") is not None else ""
        lines.append(f"model = samplers.guided(model, torch.tensor({label}), {settings['guidance_scale']}, "
                     f"{settings['guidance_rescale']}{extra})")
    lines += [f"g = torch.Generator().manual_seed({settings['seed']})",
              f"noise = torch.randn(({settings['num_images']}, {', '.join(map(str, shape))}), generator=g)",
              "with torch.no_grad():",
              "    x = sampler.sample(model, noise, generator=g)",
              "images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # what the PNGs hold"]
    return "\n".join(lines)


@dataclass
class Prepared:
    net: Any
    info: ModelInfo
    resolved: Resolved
    model: Callable


def prepare(model_id: str, count: int, cond: Conditioning, limits: Limits) -> Prepared:
    net, info = load_model(model_id, limits)
    _check_against_model(info, count, cond, limits)
    resolved = resolve_conditioning(info, cond)
    return Prepared(net, info, resolved, model_function(net, info, resolved))


def _settings_with_model(settings: dict, prepared: Prepared) -> dict:
    settings["class_index"] = prepared.resolved.class_index
    settings["null_label"] = prepared.info.null_label
    return settings


def generate(request: GenerateRequest, limits: Limits, clock=time.perf_counter) -> Iterator[Progress]:
    """Stream one run: a Progress after every model evaluation (a preview at most preview_fps times a second)."""
    prepared = prepare(request.model, request.num_images, request.cond, limits)
    info = prepared.info
    sampler = build_sampler(info, request.setup, request.cond, limits)
    noise, generator = make_noise(request.seed, request.num_images, info.event_shape, info.device)
    settings = _settings_with_model(
        _settings(request.model, info, request.setup, sampler, request.seed, request.num_images,
                  prepared.resolved, request.cond), prepared)
    defaults = default_options(info, sampler.name, request.cond)
    settings["set_options"] = {PARAM_OF_OPTION.get(k, k): _jsonable(v) for k, v in sampler.options.items()
                               if k in request.setup.options and _jsonable(defaults.get(k)) != _jsonable(v)}
    grid_t = np.asarray(sampler.timesteps, np.float64)
    throttle = Throttle(limits.preview_fps, clock)
    tracer = Tracer(info.kind)
    record = new_run("generate", sampler.nfe)
    start = clock()
    with Tracked(record):
        for step in sampler.run(prepared.model, noise, generator):
            record.nfe = step.nfe
            tracer.add(step)
            seconds = clock() - start
            drawing = clock()
            shown = preview(step.x, step.x0, info) if throttle.ready(force=step.done or step.nfe == 1) else None
            progress = Progress(sampler.steps if step.done else step_of(grid_t, step.t), sampler.steps, step.nfe,
                                step.total_nfe, float(step.t), float(step.sigma), seconds, step.done, shown)
            if step.done:
                settings.update(seconds=round(seconds, 4), notice=info.notice)
                settings["code"] = reproduction_code(settings, info.event_shape)
                if info.kind == "points":
                    settings["points"] = step.x.detach().cpu().double().numpy().round(6).tolist()
                progress.images = final_pictures(step.x, info)
                progress.sample = step.x
                progress.info = settings
                progress.trace = tracer.result()
            yield progress
            if shown is not None:
                throttle.spent(clock() - drawing)   # drawing it, and the consumer's work until it asked again


# ---------------------------------------------------------------------------------------------
# Side by side

REFERENCE_METHOD = "f-pndm"   # 4th-order pseudo linear multistep on the grid: accurate at 200 steps
_reference_cache: OrderedDict = OrderedDict()
_reference_lock = threading.Lock()
REFERENCE_CACHE_SIZE = 16


@dataclass
class CompareProgress:
    round: int
    steps: list[Any]               # the latest samplers.Step of each set-up
    seconds: float
    done: bool
    preview: np.ndarray | None
    message: str = ""
    images: list[list[np.ndarray]] | None = None
    samples: list[torch.Tensor] | None = None
    results: list[dict] | None = None
    info: dict | None = None


def _reference_key(request: CompareRequest, info: ModelInfo, resolved: Resolved, limits: Limits):
    return (info.loaded, info.version, request.seed, request.num_images, resolved.class_index,
            resolved.guidance_scale, resolved.guidance_rescale, request.cond.rescale_betas_zero_snr,
            limits.reference_steps)


def reference_description(info: ModelInfo, limits: Limits) -> str:
    if info.exact_flow:
        return "the exact probability-flow ODE solution from the same noise at t = T-1 (closed form)"
    return (f"a {REFERENCE_METHOD} solve with {limits.reference_steps} steps (trailing grid) from the same noise at "
            f"t = T-1, cached per model and seed")


def reference_run(prepared: Prepared, request: CompareRequest, noise: torch.Tensor, limits: Limits):
    """Generator of progress lines ("reference solve: NFE k/K", every 10 evaluations); returns the
    reference sample (cached: then nothing is yielded). Callers stream it with ``relay``."""
    info = prepared.info
    key = _reference_key(request, info, prepared.resolved, limits)
    with _reference_lock:
        if key in _reference_cache:
            _reference_cache.move_to_end(key)
            return _reference_cache[key]
    if isinstance(prepared.net, models.GaussianData):
        schedule = samplers.NoiseSchedule.from_config(scheduler_config(info, request.cond))
        top = schedule.num_train_timesteps - 1
        with torch.no_grad():
            result = prepared.net.flow(noise.double(), top, "clean").to(noise.dtype)
    else:
        sampler = samplers.from_diffusers_config(
            scheduler_config(info, request.cond), limits.reference_steps, method=REFERENCE_METHOD,
            spacing="trailing", set_alpha_to_one=True, prev_timestep="grid", combine="eps")
        result = None
        for step in sampler.run(prepared.model, noise):
            if step.nfe == 1 or step.nfe % 10 == 0:
                yield f"reference solve: NFE {step.nfe}/{sampler.nfe}"
            result = step.x
    with _reference_lock:
        _reference_cache[key] = result
        while len(_reference_cache) > REFERENCE_CACHE_SIZE:
            _reference_cache.popitem(last=False)
    return result


def relay(source: Iterator, wrap: Callable) -> Iterator:
    """Yield ``wrap(item)`` for every item of the generator ``source``; return what ``source`` returns."""
    while True:
        try:
            item = next(source)
        except StopIteration as stop:
            return stop.value
        yield wrap(item)


def distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root-mean-square difference per image (per point set for 2-D models), averaged over the batch."""
    diff = (x.detach().double().cpu() - ref.detach().double().cpu()).reshape(x.shape[0], -1)
    if diff.shape[1] == 2:   # 2-D points: one set, RMS over all points
        return float(diff.pow(2).sum(1).mean().sqrt())
    return float(diff.pow(2).mean(1).sqrt().mean())


def _compare_preview(steps, info: ModelInfo, panel: int) -> np.ndarray:
    return stack([preview(st.x, st.x0, info, target=panel) for st in steps if st is not None])


def compare(request: CompareRequest, limits: Limits, clock=time.perf_counter) -> Iterator[CompareProgress]:
    """Run every set-up from the same noise in lock-step (one batched forward pass per round)."""
    prepared = prepare(request.model, request.num_images, request.cond, limits)
    info = prepared.info
    built = [build_sampler(info, s, request.cond, limits, where=f"setups[{i}]: ") for i, s in enumerate(request.setups)]
    jobs = []
    for sampler in built:
        # each set-up gets the same noise and its own generator in the same state as a solo run's
        noise, generator = make_noise(request.seed, request.num_images, info.event_shape, info.device)
        jobs.append((sampler, noise, generator))
    panel = 128 if info.kind == "image" else 160
    throttle = Throttle(limits.preview_fps, clock)
    record = new_run("compare", sum(s.nfe for s in built))
    start = clock()
    latest: list[Any] = [None] * len(jobs)
    finished_at: list[float | None] = [None] * len(jobs)
    with Tracked(record):
        for round_index, steps in enumerate(samplers.run_together(prepared.model, jobs), start=1):
            now = clock() - start
            for i, st in enumerate(steps):
                if st is not None:
                    latest[i] = st
                    if st.done:
                        finished_at[i] = now
            record.nfe = sum(st.nfe for st in latest if st is not None)
            all_done = all(st is not None and st.done for st in latest)
            drawing = clock()
            wanted = throttle.ready(force=all_done or round_index == 1)
            shown = _compare_preview(latest, info, panel) if wanted else None
            counts = " · ".join(f"{i + 1}: NFE {st.nfe}/{st.total_nfe}" for i, st in enumerate(latest))
            yield CompareProgress(round_index, list(latest), now, False, shown, message=counts)
            if shown is not None:
                throttle.spent(clock() - drawing)
        samples = [st.x for st in latest]
        distances: list[float | None] = [None] * len(jobs)
        reference_note = ""
        if request.reference:
            noise, _ = make_noise(request.seed, request.num_images, info.event_shape, info.device)
            ref = yield from relay(reference_run(prepared, request, noise, limits),
                                   lambda line: CompareProgress(-1, list(latest), clock() - start, False, None,
                                                                message=line))
            distances = [distance(x, ref) for x in samples]
            reference_note = reference_description(info, limits)
            # the reference solves the probability-flow ODE; clipping x0 changes the equation
            clipped = [str(i + 1) for i, s in enumerate(built) if any(s.options.get(k) for k in CLIPPING_OPTIONS)]
            if clipped:
                reference_note += (f"; set-up {', '.join(clipped)} clip x0 (clip_sample / thresholding), the "
                                   f"reference does not: part of their distance is the clipping itself")
        results = []
        for i, (spec, sampler, st) in enumerate(zip(request.setups, built, latest)):
            results.append({
                "setup": i + 1, "label": spec.label(), "sampler": sampler.name, "steps": sampler.steps,
                "options": {PARAM_OF_OPTION.get(k, k): _jsonable(v) for k, v in sampler.options.items()},
                "nfe": st.nfe, "seconds": round(finished_at[i] or 0.0, 4),
                "distance": None if distances[i] is None else round(distances[i], 6),
            })
        total_seconds = clock() - start
        info_out = {"model": request.model, "model_loaded": info.loaded, "seed": request.seed,
                    "num_images": request.num_images, "class_label": prepared.resolved.class_label,
                    "guidance_scale": prepared.resolved.guidance_scale,
                    "guidance_rescale": prepared.resolved.guidance_rescale,
                    "rescale_betas_zero_snr": request.cond.rescale_betas_zero_snr,
                    "batched_seconds": round(total_seconds, 4), "reference": reference_note or None,
                    "notice": info.notice, "results": results}
        if info.kind == "points":
            for r, x in zip(results, samples):
                r["points"] = x.detach().cpu().double().numpy().round(6).tolist()
        yield CompareProgress(-1, list(latest), total_seconds, True, _compare_preview(latest, info, panel),
                              message="done", images=[final_pictures(x, info) for x in samples], samples=samples,
                              results=results, info=info_out)


# ---------------------------------------------------------------------------------------------
# Streaming without stalling the sampler

_END = object()


def in_background(make_iterator: Callable[[], Iterator], lead: int = 4,
                  cancelled: Callable[[], bool] | None = None) -> Iterator:
    """Run ``make_iterator()`` in a worker thread and yield its items here, in order, every one.

    A web server spends milliseconds on each streamed update (encoding, diffing, sending); done
    inline that time would add to every step. Here the sampler keeps computing while the consumer
    sends, so the run takes about as long as the network alone. The worker may run at most
    ``lead`` items ahead: a server slowed by load must not fall so far behind that a Stop lands
    after the sampler already finished. Closing this generator (a Stop) stops the worker before its
    next model evaluation, and closes the wrapped iterator there. ``cancelled()`` is a second way
    to stop it, checked after every item: a web server may be unable to close a generator that is
    busy waiting for its next item (Gradio retries the close between two updates only).
    """
    cancelled = cancelled or (lambda: False)
    items: "queue.Queue" = queue.Queue(maxsize=max(1, lead))
    stop, finished = threading.Event(), threading.Event()

    def hand_over(entry) -> bool:
        """Queue ``entry`` for the consumer; False once the consumer has gone or the request was cancelled."""
        while not (stop.is_set() or cancelled()):
            try:
                items.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if not hand_over((True, item)) or stop.is_set() or cancelled():
                    iterator.close()   # GeneratorExit at the sampler's yield: the run is marked stopped
                    return
            hand_over((True, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((False, exc))
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="sampler-run", daemon=True)
    worker.start()
    try:
        while True:
            try:
                ok, item = items.get(timeout=0.05)
            except queue.Empty:
                if finished.is_set() and items.empty():   # stopped by cancelled(): nothing more will come
                    return
                continue
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()


# ---------------------------------------------------------------------------------------------
# ZeroGPU: how long a call may hold the GPU


def gpu_seconds(evaluations: int, rows: int) -> int:
    """A generous estimate of GPU time for ``evaluations`` forward passes of ``rows`` images."""
    return int(min(120, max(15, 10 + 0.05 * evaluations * max(1, math.ceil(rows / 8)))))


def generate_gpu_seconds(values: dict, limits: Limits) -> int:
    steps = values.get("steps") if isinstance(values.get("steps"), (int, float)) else 20
    count = values.get("num_images") if isinstance(values.get("num_images"), (int, float)) else 1
    return gpu_seconds(int(min(steps, limits.max_steps)) * 2, int(min(count, limits.max_images)))


def compare_gpu_seconds(values: dict, limits: Limits) -> int:
    setups = values.get("setups") if isinstance(values.get("setups"), list) else []
    total = sum(int(s.get("steps", 20)) if isinstance(s, dict) and isinstance(s.get("steps"), (int, float)) else 20
                for s in setups[:limits.max_compare]) or 20
    if values.get("reference"):
        total += limits.reference_steps
    count = values.get("num_images") if isinstance(values.get("num_images"), (int, float)) else 1
    return gpu_seconds(total * 2, int(min(count, limits.max_images)) * max(1, len(setups)))
