"""Build a sampler from a diffusers ``scheduler_config.json`` dict.

Each method declares the diffusers class it mirrors as data (``Method.diffusers``: the class
name, its defaults, a translator for keys that are not one-to-one options, and which configs of
the class pick it); this module only reads the registry.

- Picked by ``_class_name``: keys present in the config override the class's defaults (as
  ``SomeScheduler.from_config(other_config)`` does in diffusers); missing keys take the class's
  defaults, so a bare ``{"_class_name": "DDIMScheduler"}`` behaves like diffusers.
- Chosen by name (``method=...``): the method keeps every default that defines it
  (``Method.defaults``) unless the config itself sets that key (to a value the method allows) or
  the caller passes it; the class defaults fill in only what the method leaves open.
"""
from __future__ import annotations

from .core import OPTIONS, REGISTRY, Sampler
from .schedule import NoiseSchedule

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                 "rescale_betas_zero_snr")

# diffusers key -> our option name (same name when absent): the one place names change
RENAMED = {"timestep_spacing": "spacing", "solver_order": "order"}

# The defaults every diffusers scheduler class shares (a method without a class takes these).
COMMON = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
              trained_betas=None, prediction_type="epsilon", timestep_spacing="leading", steps_offset=0,
              rescale_betas_zero_snr=False)


def classes() -> dict[str, list[str]]:
    """diffusers class name -> the methods that mirror it, in registry order."""
    out: dict[str, list[str]] = {}
    for m in REGISTRY.values():
        if m.diffusers is not None:
            out.setdefault(m.diffusers.cls, []).append(m.name)
    return out


def class_of(method: str) -> str | None:
    d = REGISTRY[method].diffusers
    return None if d is None else d.cls


def method_for(config: dict, method: str | None) -> str:
    if method is not None:
        if method not in REGISTRY:
            raise ValueError(f"method={method!r} is unknown; allowed: {', '.join(REGISTRY)}")
        return method
    cls = config.get("_class_name")
    known = classes()
    if cls not in known:
        raise ValueError(f"_class_name={cls!r} is not a scheduler we can mirror; allowed: "
                         f"{', '.join(known)} (or pass method=...)")
    for name in known[cls]:
        picks = REGISTRY[name].diffusers.picks
        if picks is not None and picks(config):
            return name
    raise ValueError(f"_class_name={cls!r}: no sampler mirrors this configuration of it; pass method=... "
                     f"(one of {', '.join(known[cls])})")


def _allowed(method, option: str, value) -> bool:
    narrowed = method.choices.get(option)
    return narrowed is None or value in narrowed


def from_diffusers_config(config: dict, num_inference_steps: int, method: str | None = None,
                          **options) -> Sampler:
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict (a scheduler_config.json), got {type(config).__name__}")
    if method is not None:   # a ComfyUI / A1111 name: its options count as the caller's
        from .names import expand
        method, options = expand(method, options)
    name = method_for(config, method)
    m = REGISTRY[name]
    by_name = method is not None
    given = {k: v for k, v in config.items() if not k.startswith("_")}
    class_defaults = m.diffusers.defaults if m.diffusers else COMMON
    cfg = dict(class_defaults, **given)
    try:
        schedule = NoiseSchedule.from_config({k: cfg[k] for k in SCHEDULE_KEYS if k in cfg})
    except ValueError as err:
        raise ValueError(f"scheduler config: {err}") from None
    allowed = set(m.options) | {"prediction_type"}

    def keeps_own(opt: str, value, from_config: bool) -> bool:
        # a method chosen by name keeps what defines it unless the config itself says otherwise
        return by_name and opt in m.defaults and (not from_config or not _allowed(m, opt, value))

    chosen, source = {}, {}   # option -> value, and the config key it came from
    for key, value in cfg.items():
        opt = RENAMED.get(key, key)
        if opt not in allowed or opt not in OPTIONS:
            continue
        try:
            value = OPTIONS[opt].check(value)
        except ValueError as err:
            raise ValueError(f"scheduler config key {key!r}: {err}") from None
        if not keeps_own(opt, value, key in given):
            chosen[opt], source[opt] = value, key
    if m.diffusers and m.diffusers.translate:
        translated = m.diffusers.translate(cfg, name)
        # what the class's defaults alone translate to is a class default, not the config's say
        baseline = m.diffusers.translate(dict(class_defaults), name) if by_name else {}
        for opt, value in translated.items():
            from_config = opt not in baseline or baseline[opt] != value
            if opt not in allowed:
                continue
            if keeps_own(opt, value, from_config):
                chosen.pop(opt, None)   # a class fact (e.g. "has no such key") the method's own default answers
            else:
                chosen[opt] = value
                source.pop(opt, None)
    for opt, value in chosen.items():
        if opt in source and not _allowed(m, opt, value):
            raise ValueError(f"scheduler config key {source[opt]!r}: {opt}={value!r} is not allowed for sampler "
                             f"{name!r}; allowed: {', '.join(map(str, m.choices[opt]))}")
    chosen.update(options)
    return Sampler(name, num_inference_steps, schedule, **chosen)
