"""Names people know: ComfyUI's sampler and scheduler names, A1111/Forge's sampler and schedule
labels, resolved to our methods and spacings. Data only; ``resolve`` / ``resolve_schedule`` read it.

An alias is (method, options) giving the home tool's picture on the same sigmas (ComfyUI's
samplers are k-diffusion's: ``dpmpp_2m`` is DPM-Solver++(2M) with only the step to sigma 0 of
first order; the SDE ones draw from a Brownian tree). ComfyUI sampler names carry no schedule
of their own: the spacing comes from a scheduler name (or the method's default). A target may
be a list of candidate method names (the first registered wins); a name whose targets are all
unregistered is left out and listed by ``unresolved()``.

Known differences from the home tools, on the same sigmas:
- ComfyUI feeds a discrete model the nearest train timestep of each sigma; we feed the fractional
  timestep (``round_timesteps=True`` rounds the grid's own points);
- ComfyUI's full-denoise start noise is sqrt(1 + sigma_max^2) z; the k-diffusion family here starts
  at sigma_max z (``init_noise``), a relative difference of 1 / (2 sigma_max^2);
- ComfyUI's Brownian tree spans the whole batch from one seed; ``noise='brownian'`` keeps one tree
  per image (entropy seed + i), so image 0 of any batch is ComfyUI's batch-of-one picture;
- ComfyUI's ancestral samplers draw with torch's global generator; ours draw in the ``noise`` mode.
"""
from __future__ import annotations

KDIFF_2M = {"order": 2, "solver_type": "midpoint", "lower_order_final": False, "round_timesteps": False}
BROWNIAN = {"noise": "brownian"}

# ComfyUI KSAMPLER names (comfy/samplers.py) plus ddim, uni_pc, uni_pc_bh2.
COMFY_SAMPLERS: dict[str, tuple] = {
    "euler": ("euler", {}),
    "euler_cfg_pp": ("euler-cfg++", {}),
    "euler_ancestral": ("euler-a", {}),
    "euler_ancestral_cfg_pp": ("euler-a-cfg++", {}),
    "heun": ("heun", {}),
    "heunpp2": ("heunpp2", {}),
    "exp_heun_2_x0": ("exp-heun-2-x0", {}),          # ComfyUI: seeds_2 with eta 0, r 1, solver_type phi_2
    "exp_heun_2_x0_sde": ("exp-heun-2-x0-sde", {}),  # the same with eta 1
    "dpm_2": ("dpm2", {}),
    "dpm_2_ancestral": ("dpm2-a", {}),
    "lms": ("lms", {"order": 4}),
    "dpm_fast": ("dpm-solver-fast", {"algorithm_type": "dpmsolver", "order": 3}),
    # k-diffusion's controller (PID, accept_safety 0.81) is not ours: the same method, other step sizes
    "dpm_adaptive": ("dpm-solver-adaptive", {"algorithm_type": "dpmsolver", "order": 3, "rtol": 0.05,
                                             "atol": 0.0078}),
    "dpmpp_2s_ancestral": ("dpm++2s-a", {}),
    "dpmpp_2s_ancestral_cfg_pp": ("dpm++2s-a-cfg++", {}),
    "dpmpp_sde": ("dpm++sde", BROWNIAN),
    "dpmpp_sde_gpu": ("dpm++sde", BROWNIAN),
    "dpmpp_2m": ("dpm-solver++", KDIFF_2M),
    "dpmpp_2m_cfg_pp": ("dpm++2m-cfg++", {}),
    "dpmpp_2m_sde": ("dpm++2m-sde", BROWNIAN),
    "dpmpp_2m_sde_gpu": ("dpm++2m-sde", BROWNIAN),
    "dpmpp_2m_sde_heun": ("dpm++2m-sde-heun", BROWNIAN),
    "dpmpp_2m_sde_heun_gpu": ("dpm++2m-sde-heun", BROWNIAN),
    "dpmpp_3m_sde": ("dpm++3m-sde", BROWNIAN),
    "dpmpp_3m_sde_gpu": ("dpm++3m-sde", BROWNIAN),
    "lcm": ("lcm", {}),
    "ipndm": ("ipndm", {"order": 4}),
    "ipndm_v": ("ipndm-v", {}),
    "deis": ("deis", {"solver_type": "tab", "order": 3}),    # ComfyUI: max_order 3, deis_mode 'tab'
    "res_multistep": ("res-multistep", {}),
    "res_multistep_cfg_pp": ("res-multistep-cfg++", {}),
    "res_multistep_ancestral": ("res-multistep-a", {}),
    "res_multistep_ancestral_cfg_pp": ("res-multistep-a-cfg++", {}),
    "gradient_estimation": ("gradient-estimation", {}),
    "gradient_estimation_cfg_pp": ("gradient-estimation-cfg++", {}),
    "er_sde": ("er-sde", {}),
    "seeds_2": ("seeds-2", {}),
    "seeds_3": ("seeds-3", {}),
    "sa_solver": (["sa-solver"], {}),
    "sa_solver_pece": (["sa-solver-pece"], {}),
    "uni_pc": ("unipc", {"solver_type": "bh1", "order": 3}),
    "uni_pc_bh2": ("unipc", {"solver_type": "bh2", "order": 3}),
}
# ComfyUI names that are ours with another meaning: ours keeps the plain name.
COMFY_COLLISIONS: dict[str, tuple] = {
    "ddim": ("euler", {}),   # ComfyUI's "ddim" is k-diffusion Euler (DDIM itself on the ddim_uniform schedule)
    "ddpm": ("ddpm-k", {}),   # k-diffusion's DDPM step on the given sigmas
}
COMFY_PREFIX = "comfy:"

# A1111 / Forge sampler labels (modules/sd_samplers_kdiffusion.py and friends).
A1111_SAMPLERS: dict[str, tuple] = {
    "DPM++ 2M": ("dpm-solver++", KDIFF_2M),
    "DPM++ SDE": ("dpm++sde", BROWNIAN),
    "DPM++ 2M SDE": ("dpm++2m-sde", BROWNIAN),
    "DPM++ 2M SDE Heun": ("dpm++2m-sde-heun", BROWNIAN),
    "DPM++ 2S a": ("dpm++2s-a", {}),
    "DPM++ 3M SDE": ("dpm++3m-sde", BROWNIAN),
    "Euler a": ("euler-a", {}),
    "Euler": ("euler", {}),
    "LMS": ("lms", {"order": 4}),
    "Heun": ("heun", {}),
    "DPM2": ("dpm2", {}),
    "DPM2 a": ("dpm2-a", {}),
    "DPM fast": ("dpm-solver-fast", {"algorithm_type": "dpmsolver", "order": 3}),
    "DPM adaptive": ("dpm-solver-adaptive", {"algorithm_type": "dpmsolver", "order": 3, "rtol": 0.05,
                                             "atol": 0.0078}),
    "Restart": (["restart"], {}),
    "DDIM": ("ddim", {}),
    "PLMS": ("plms", {}),
    "UniPC": ("unipc", {"solver_type": "bh1", "order": 3}),   # A1111's default variant bh1, order 3
    "LCM": ("lcm", {}),
    "DDIM CFG++": ("ddim-cfg++", {}),
}

# Scheduler names -> grid options. None = refuse with the message.
AYS = ("'Align Your Steps' needs noise levels optimised for the model (the schedule-optimiser, not built "
       "yet); allowed meanwhile: karras, exponential, kl_optimal (ComfyUI's, after the same paper)")
COMFY_SCHEDULERS: dict[str, dict | str] = {
    "simple": {"spacing": "simple"}, "sgm_uniform": {"spacing": "sgm_uniform"}, "karras": {"spacing": "karras"},
    "exponential": {"spacing": "exponential"}, "ddim_uniform": {"spacing": "ddim_uniform"},
    "beta": {"spacing": "beta"}, "normal": {"spacing": "normal"},
    "linear_quadratic": {"spacing": "linear_quadratic"}, "kl_optimal": {"spacing": "kl_optimal"},
    # scheduler nodes
    "polyexponential": {"spacing": "polyexponential"}, "laplace": {"spacing": "laplace"}, "vp": {"spacing": "vp"},
    "sdturbo": {"spacing": "turbo"}, "align_your_steps": AYS,
    "gits": "GITS needs its per-model tables from a teacher trajectory (the schedule-optimiser, not built yet); "
            "allowed meanwhile: any spacing",
    "optimal_steps": "OptimalSteps needs per-model tables (the schedule-optimiser, not built yet); allowed "
                     "meanwhile: any spacing",
}
A1111_SCHEDULES: dict[str, dict | str] = {
    "Automatic": {"spacing": None},    # the model's own default (its config, else the method's)
    "Uniform": {"spacing": "normal"}, "Karras": {"spacing": "karras"}, "Exponential": {"spacing": "exponential"},
    "Polyexponential": {"spacing": "polyexponential"}, "SGM Uniform": {"spacing": "sgm_uniform"},
    "KL Optimal": {"spacing": "kl_optimal"}, "Align Your Steps": AYS, "Simple": {"spacing": "simple"},
    "Normal": {"spacing": "normal"}, "DDIM": {"spacing": "ddim_uniform"},
    # Forge's Beta (ComfyUI's); A1111 1.10's own places the quantiles linearly in sigma instead
    "Beta": {"spacing": "beta"},
    "Turbo": {"spacing": "trailing"},  # round(k 1000/N) - 1: diffusers' trailing table
}


# A1111 before 1.9 put the schedule in the label
A1111_OLD_LABELS = ("LMS Karras", "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras", "DPM++ 2M Karras",
                    "DPM++ SDE Karras", "DPM++ 2M SDE Karras", "DPM++ 2M SDE Exponential", "DPM++ 2M SDE Heun Karras",
                    "DPM++ 2M SDE Heun Exponential", "DPM++ 3M SDE Karras", "DPM++ 3M SDE Exponential")


def sampler_table() -> dict[str, tuple]:
    """Every sampler alias: name -> (candidate targets, options)."""
    out = dict(COMFY_SAMPLERS)
    out.update({COMFY_PREFIX + k: v for k, v in COMFY_COLLISIONS.items()})
    out.update(A1111_SAMPLERS)
    for label in A1111_OLD_LABELS:
        base, sched = label.rsplit(" ", 1)
        target, opts = A1111_SAMPLERS[base]
        out[label] = (target, dict(opts, **A1111_SCHEDULES[sched]))
    return out


def schedule_table() -> dict[str, dict | str]:
    return {**COMFY_SCHEDULERS, **A1111_SCHEDULES}


def _target(candidates) -> str | None:
    from .core import REGISTRY
    for name in [candidates] if isinstance(candidates, str) else candidates:
        if name in REGISTRY:
            return name
    return None


def aliases() -> dict[str, tuple[str, dict]]:
    """name -> (method, options) for every alias whose target is registered."""
    out = {}
    for name, (candidates, opts) in sampler_table().items():
        target = _target(candidates)
        if target is not None:
            out[name] = (target, dict(opts))
    return out


def unresolved() -> list[str]:
    """Names in the tables whose target method is not registered (yet)."""
    return sorted(name for name, (candidates, _) in sampler_table().items() if _target(candidates) is None)


def resolve(name) -> tuple[str, dict]:
    """(method, options) of a registry name (no options) or a known alias."""
    from .core import REGISTRY
    if isinstance(name, str) and name in REGISTRY:
        return name, {}
    table = aliases()
    if isinstance(name, str) and name in table:
        return table[name]
    hint = ""
    if isinstance(name, str) and name in sampler_table():
        hint = f" ({name!r} is a known name whose sampler is not in this build)"
    raise ValueError(f"sampler={name!r} is unknown{hint}; allowed: {', '.join(REGISTRY)}, or a ComfyUI / A1111 "
                     f"name such as {', '.join(list(table)[:6])} (samplers.describe() lists each method's aliases)")


def resolve_schedule(name) -> dict:
    """Grid options of a spacing, a ComfyUI scheduler name or an A1111 schedule label
    ({"spacing": None}: the default)."""
    from .grids import SPACINGS
    if isinstance(name, str) and name in SPACINGS:
        return {"spacing": name}
    table = schedule_table()
    entry = table.get(name) if isinstance(name, str) else None
    if entry is None and isinstance(name, str):
        entry = table.get(name.lower())
    if isinstance(entry, str):
        raise ValueError(f"spacing={name!r}: {entry}")
    if entry is None:
        raise ValueError(f"spacing={name!r} is not allowed; allowed: {', '.join(SPACINGS)}, or a ComfyUI scheduler "
                         f"/ A1111 schedule name ({', '.join(table)})")
    return dict(entry)


def expand(method, options: dict) -> tuple[str, dict]:
    """A request's (method name or alias, options) -> (registry method, options): the alias's options
    under the caller's, a scheduler name in ``spacing`` replaced by its grid options."""
    target, alias_opts = resolve(method)
    out = dict(alias_opts)
    for key, value in options.items():
        if key == "spacing" and value is not None:
            out.update(resolve_schedule(value))
        else:
            out[key] = value
    if out.get("spacing", "") is None:   # 'Automatic': the default spacing
        del out["spacing"]
    return target, out
