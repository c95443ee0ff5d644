"""The models the app offers: names, descriptions, the checks of a model id, and what a loaded model
looks like to the app (``ModelInfo``). Loading goes through ``models.get`` (its one LRU cache)."""
from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import models
from lab.limits import Limits
from lab.values import short
from models import embedded as embedded_models
from models import loading as model_loading


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
    with _load_lock:
        _extra_instances.pop(name, None)


def allow_any_hub_model(environ=None) -> bool:
    env = os.environ if environ is None else environ
    return str(env.get("ALLOW_ANY_HUB_MODEL", "")).strip().upper() in {"1", "TRUE", "YES", "ON"}


def model_choices() -> list[str]:
    return list(embedded_models.EMBEDDED) + list(EXTRA_MODELS) + list(model_loading.ALLOWED_HUB_MODELS)


def hub_cached(repo_id: str) -> bool:
    """Whether a snapshot of ``repo_id`` is in the local hub cache (so it loads offline)."""
    folder = Path(model_loading.hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hub answers from here (asked once per process: a TCP connect, 1.5 s at most)."""
    import socket

    if model_loading.hub_offline():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=1.5).close()
        return True
    except OSError:
        return False


def offered_models(limits: Limits) -> tuple[list[str], str]:
    """(the models the page offers: those that can run on this machine, one line saying why others are not)."""
    too_big = [m for m in model_loading.ALLOWED_HUB_MODELS if HUB_RESOLUTION.get(m, 0) > limits.max_resolution]
    unreachable = [m for m in model_loading.ALLOWED_HUB_MODELS
                   if m not in too_big and not hub_cached(m) and not hub_reachable()]
    offered = [m for m in model_choices() if m not in too_big and m not in unreachable]
    why = []
    if too_big:
        why.append(f"{', '.join(too_big)} ({max(HUB_RESOLUTION[m] for m in too_big)} px images; this machine allows "
                   f"MAX_RESOLUTION={limits.max_resolution} px)")
    if unreachable:
        why.append(f"{', '.join(unreachable)} (the Hub cannot be reached from here and it is not in the local cache)")
    return offered, ("Not offered here: " + "; ".join(why) + ".") if why else ""


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


_load_lock = threading.Lock()
_extra_instances: dict[str, Any] = {}   # one instance per registered in-process model (a registry, not a cache)
_seen_default_version = [0.0]


def forget_models() -> None:
    """Drop every loaded model (``lab.cache_clear`` also drops the reference solves)."""
    models.cache_clear()
    with _load_lock:
        _extra_instances.clear()


def _default_version() -> float:
    try:
        return (Path(embedded_models.DEFAULT_MODEL_DIR) / model_loading.WEIGHTS_NAME).stat().st_mtime
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=1)
def emoji_categories() -> list[str] | None:
    try:
        with np.load(embedded_models.EMOJI_IMAGES, allow_pickle=False) as data:
            return [str(c) for c in data["categories"]] if "categories" in data.files else None
    except (OSError, ValueError, KeyError):
        return None


def describe_model(name: str, loaded: str, net, notice: str, version: float) -> ModelInfo:
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
    """(model, ModelInfo) for a checked model id, through ``models.get`` (its LRU cache of
    MODEL_CACHE_SIZE models, environment, default 2, is the only one).

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
    with _load_lock:
        if loaded in EXTRA_MODELS:
            if loaded not in _extra_instances:
                _extra_instances[loaded] = EXTRA_MODELS[loaded][1]()
            net = _extra_instances[loaded]
        else:
            if loaded == "default" and version != _seen_default_version[0]:
                if _seen_default_version[0]:
                    models.cache_clear()   # the training script wrote a newer export: load it afresh
                _seen_default_version[0] = version
            try:
                net = models.get(loaded)
            except FileNotFoundError as exc:
                if loaded == "default":  # the export folder was being replaced: one retry
                    time.sleep(0.5)
                    net = models.get(loaded)
                else:
                    raise FileNotFoundError(f"model={loaded!r} could not be loaded: {exc}") from None
    info = describe_model(name, loaded, net, notice, version)
    if limits is not None and info.kind == "image" and info.resolution > limits.max_resolution:
        raise ValueError(f"model={name!r} makes {info.resolution} px images; this machine allows at most "
                         f"MAX_RESOLUTION={limits.max_resolution} px")
    return net, info
